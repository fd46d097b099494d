"""Attribution methods, one per file, each a Captum ``GradientAttribution``."""
