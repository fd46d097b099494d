// Typesets the maths that pymdownx.arithmatex (generic mode) leaves in the page:
// <span class="arithmatex">\(...\)</span> inline, <div class="arithmatex">\[...\]</div>
// display. KaTeX itself is vendored beside this file (docs/js/katex/, MIT licence).
(function () {
  "use strict";
  var DELIMITERS = [["\\(", "\\)", false], ["\\[", "\\]", true]];

  function render(element) {
    var tex = element.textContent.trim();
    var display = element.tagName === "DIV";
    for (var i = 0; i < DELIMITERS.length; i++) {
      var d = DELIMITERS[i];
      if (tex.slice(0, 2) === d[0] && tex.slice(-2) === d[1]) {
        tex = tex.slice(2, -2);
        display = d[2];
        break;
      }
    }
    katex.render(tex, element, { displayMode: display, throwOnError: false });
  }

  function renderAll() {
    var elements = document.querySelectorAll(".arithmatex");
    for (var i = 0; i < elements.length; i++) {
      render(elements[i]);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", renderAll);
  } else {
    renderAll();
  }
})();
