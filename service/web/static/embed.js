/* Sends the regimen signup form without leaving the blog post. Optional: without this
   script the form still posts and comes back. Anything unexpected (an old browser, a network
   error, an answer other than "accepted" or "fix the address") falls back to that plain post,
   so the reader always gets an answer from the service itself. */
(function () {
  "use strict";

  function setUp(form) {
    // The snippet pasted twice loads the script twice: one handler per form is enough.
    if (form.getAttribute("data-regimen-ready")) return;
    form.setAttribute("data-regimen-ready", "1");
    var box = form.parentNode;
    var sent = box.querySelector(".regimen-sent");
    var error = form.querySelector(".regimen-error");
    var email = form.elements.email;
    var button = form.querySelector("button[type=submit]");
    var source = form.elements.source;
    // The post's own address, when the author left it out of the snippet.
    if (source && !source.value) source.value = location.href.split("#")[0];

    function showError(text, aboutEmail) {
      error.textContent = text;
      error.hidden = false;
      if (aboutEmail) email.setAttribute("aria-invalid", "true");
      email.focus();
    }

    function done(response) {
      if (response.status === 202) {
        form.hidden = true;
        sent.hidden = false;
        sent.focus();
        return null;
      }
      if (response.status === 422) {
        return response.json().then(function (body) {
          // The address, or else the snippet's regimen (no longer offered).
          showError(body.errors.email || body.errors.regimen, !!body.errors.email);
        });
      }
      throw new Error("unexpected answer " + response.status);
    }

    form.addEventListener("submit", function (event) {
      if (!window.fetch || !sent || !error) return;
      event.preventDefault();
      var fields = {};
      Array.prototype.forEach.call(form.elements, function (field) {
        if (field.name) fields[field.name] = field.value;
      });
      button.disabled = true;
      fetch(form.action, {
        method: "POST",
        mode: "cors",
        credentials: "omit",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: JSON.stringify(fields)
      }).then(done).catch(function () {
        form.submit();
      }).then(function () {
        button.disabled = false;
      });
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("form.regimen-signup"), setUp);
})();
