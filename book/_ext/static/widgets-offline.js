/* Loaded between require.js and the ipywidgets HTML manager (book/_ext/offline_assets.py).
 *
 * 1. The manager finds its fonts and styles relative to the AMD module's address, which
 *    require.js would resolve against the page's folder; map the module name to our copy
 *    in _static so those files are found offline.
 * 2. The manager typesets widget labels with the MathJax 2 call MathJax.Hub.Queue, but the
 *    site runs MathJax 3, which has no Hub: give every MathJax object a Hub.Queue that
 *    typesets the element with MathJax 3 once it has started.
 */
(function () {
  "use strict";
  var here = document.currentScript.src;
  var staticDir = here.slice(0, here.lastIndexOf("/") + 1);
  var manager = document.currentScript.getAttribute("data-html-manager");
  if (window.require && window.require.config && manager) {
    window.require.config({ paths: { "@jupyter-widgets/html-manager/dist": staticDir + manager } });
  }

  var waiting = [];
  function typeset(element) {
    var mj = window.MathJax;
    if (mj && mj.startup && mj.startup.promise && mj.typesetPromise) {
      mj.startup.promise.then(function () { return mj.typesetPromise(element ? [element] : undefined); });
    } else if (element) {
      waiting.push(element);
    }
  }
  function withHub(mj) {
    if (mj && typeof mj === "object" && !mj.Hub) {
      mj.Hub = { Queue: function (command) { typeset(Array.isArray(command) ? command[2] : undefined); } };
    }
    if (mj && mj.startup && mj.startup.promise && waiting.length) {
      var elements = waiting.splice(0);
      mj.startup.promise.then(function () { return mj.typesetPromise(elements); });
    }
    return mj;
  }
  var current = withHub(window.MathJax);
  Object.defineProperty(window, "MathJax", {
    configurable: true,
    get: function () { return current; },
    set: function (value) { current = withHub(value); },
  });
  document.addEventListener("DOMContentLoaded", function () { withHub(current); });
})();
