/* The regimen page's "Done" buttons, without reloading the page. Optional: each button is a
   plain form that works without this script. Nothing is stored in the browser (no cookie, no
   local storage): the reader's progress lives with their personal link, so another reader of
   the same device inherits nothing. Anything unexpected (an old browser, a network error, an
   answer other than the new state) falls back to the plain form, so the reader always gets
   the service's own answer. */
(function () {
  "use strict";

  if (!window.fetch || !window.URLSearchParams || !window.FormData) return;

  function show(form, button, state) {
    form.elements.done.value = state.done ? "0" : "1";
    button.textContent = state.button;
    button.classList.toggle("is-done", state.done);
    var item = document.getElementById(state.step);
    if (item) item.classList.toggle("is-done", state.done);
    var summary = document.getElementById("progress");
    if (summary) summary.innerHTML = state.summary;
    var status = document.getElementById("progress-status");
    if (status) status.textContent = state.status;
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("done-form")) return;
    event.preventDefault();
    var button = form.querySelector("button");
    if (button.getAttribute("aria-disabled") === "true") return;  // a press already on its way
    button.setAttribute("aria-disabled", "true");
    fetch(form.action, {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      headers: { "Accept": "application/json" },
      credentials: "omit",
      cache: "no-store"
    }).then(function (response) {
      if (!response.ok) throw new Error("answered " + response.status);
      return response.json();
    }).then(function (state) {
      show(form, button, state);
      button.removeAttribute("aria-disabled");
    }).catch(function () {
      form.submit();
    });
  });
})();
