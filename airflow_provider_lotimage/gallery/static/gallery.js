// Follow the Airflow UI's own light/dark choice: the gallery is shown in a same-origin iframe, so
// it can read the class the UI puts on its <html>. Outside the UI, ?theme= or the system setting.
(function () {
  var root = document.documentElement;
  function apply(mode) {
    if (mode === "dark" || mode === "light") root.setAttribute("data-theme", mode);
  }
  var asked = new URLSearchParams(window.location.search).get("theme");
  if (asked) { apply(asked); return; }
  try {
    var host = window.parent !== window ? window.parent.document.documentElement : null;
    if (!host) return;
    var sync = function () {
      apply(host.classList.contains("dark") ? "dark" : host.classList.contains("light") ? "light" : "");
    };
    sync();
    new MutationObserver(sync).observe(host, { attributes: true, attributeFilter: ["class", "style"] });
  } catch (e) {
    // Another origin: keep the system setting.
  }
})();
