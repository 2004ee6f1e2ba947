// Passkeys on the driver's portal (WebAuthn Level 2): adds one for the signed-in driver, or
// signs in with one. Buttons carrying data-passkey stay hidden where the browser has no
// WebAuthn; the e-mailed link works everywhere.
(function () {
  "use strict";

  function toB64u(buffer) {
    var bytes = new Uint8Array(buffer), text = "";
    for (var i = 0; i < bytes.length; i++) { text += String.fromCharCode(bytes[i]); }
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function fromB64u(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var raw = atob(b64), out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { out[i] = raw.charCodeAt(i); }
    return out.buffer;
  }

  async function post(url, token, body) {
    var answer = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": token },
      body: JSON.stringify(body || {})
    });
    var data = await answer.json();
    if (!answer.ok) {
      var why = data.error && data.error.message ? data.error.message : data.error;
      throw new Error(why || String(answer.status));
    }
    return data;
  }

  async function register(button) {
    var started = await post("/account/passkeys/options", button.dataset.csrf);
    var options = started.options;
    options.challenge = fromB64u(options.challenge);
    options.user.id = fromB64u(options.user.id);
    (options.excludeCredentials || []).forEach(function (c) { c.id = fromB64u(c.id); });
    var made = await navigator.credentials.create({ publicKey: options });
    await post("/account/passkeys", button.dataset.csrf, {
      ceremony: started.ceremony,
      credential: {
        id: made.id, rawId: toB64u(made.rawId), type: made.type,
        response: {
          clientDataJSON: toB64u(made.response.clientDataJSON),
          attestationObject: toB64u(made.response.attestationObject),
          transports: made.response.getTransports ? made.response.getTransports() : []
        },
        clientExtensionResults: made.getClientExtensionResults()
      }
    });
    window.location.reload();
  }

  async function signIn(button) {
    var started = await post("/account/passkeys/sign-in/options", button.dataset.csrf);
    var options = started.options;
    options.challenge = fromB64u(options.challenge);
    (options.allowCredentials || []).forEach(function (c) { c.id = fromB64u(c.id); });
    var used = await navigator.credentials.get({ publicKey: options });
    var done = await post("/account/passkeys/sign-in", button.dataset.csrf, {
      ceremony: started.ceremony,
      credential: {
        id: used.id, rawId: toB64u(used.rawId), type: used.type,
        response: {
          clientDataJSON: toB64u(used.response.clientDataJSON),
          authenticatorData: toB64u(used.response.authenticatorData),
          signature: toB64u(used.response.signature),
          userHandle: used.response.userHandle ? toB64u(used.response.userHandle) : null
        },
        clientExtensionResults: used.getClientExtensionResults()
      }
    });
    window.location.assign(done.next);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-passkey]").forEach(function (button) {
      if (!window.PublicKeyCredential) { return; }
      button.hidden = false;
      button.addEventListener("click", function () {
        var status = document.getElementById(button.dataset.status);
        var work = button.dataset.passkey === "register" ? register : signIn;
        work(button).catch(function (error) {
          if (status) { status.textContent = "Passkey: " + error.message; }
        });
      });
    });
  });
})();
