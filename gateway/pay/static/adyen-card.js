// The payment page's Adyen card form. The card fields carry no name, so the browser never
// sends them; on submit each one is encrypted on this phone with the Adyen account's
// client-side encryption key (Adyen's CSE library, loaded before this file: RSA-encrypted
// AES-CCM, "adyenjs_..." strings only Adyen can open) together with the generation time the
// gateway gave the page, and only those ciphertexts are posted. The gateway passes them to
// Adyen's /payments as the paymentMethod's encryptedCardNumber, encryptedExpiryMonth,
// encryptedExpiryYear and encryptedSecurityCode, as Adyen's own Card component does.
(function () {
  "use strict";
  var form = document.getElementById("adyen-form");
  if (!form || !window.adyen || !window.adyen.encrypt) {
    return;
  }
  var button = document.getElementById("pay-adyen");
  var shown = document.getElementById("adyen-error");
  // Validation stays on: a card number failing the Luhn check, a month outside 1-12 or a
  // malformed CVC is refused here and nothing is posted.
  var cse = window.adyen.encrypt.createEncryption(form.dataset.key, {});
  var targets = {
    number: "encryptedCardNumber",
    expiryMonth: "encryptedExpiryMonth",
    expiryYear: "encryptedExpiryYear",
    cvc: "encryptedSecurityCode"
  };
  button.disabled = false;

  form.addEventListener("submit", function (event) {
    var fields = form.querySelectorAll("[data-cse]");
    var generationtime = form.dataset.generationtime;
    var ok = true;
    for (var i = 0; i < fields.length; i++) {
      var name = fields[i].dataset.cse;
      var data = { generationtime: generationtime };
      data[name] = fields[i].value.replace(/\s+/g, "");
      var encrypted = data[name] ? cse.encrypt(data) : false;
      form.elements[targets[name]].value = encrypted || "";
      ok = ok && Boolean(encrypted);
    }
    if (!ok) {
      event.preventDefault();
      shown.textContent = shown.dataset.invalid;
      shown.hidden = false;
      return;
    }
    button.disabled = true; // one payment per tap; the gateway refuses a second on the code
  });
})();
