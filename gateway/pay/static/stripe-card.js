// The payment page's Stripe card form: Stripe's own card element (stripe.js, loaded before
// this file) collects the card; the card never touches the gateway. On submit the page asks
// the gateway for a SetupIntent, confirms it in the browser (stripe.confirmCardSetup, which
// runs 3-D Secure where the card asks for it), and posts the PaymentMethod it left (pm_...)
// to the gateway, which places the hold with it.
(function () {
  "use strict";
  var form = document.getElementById("stripe-form");
  if (!form || typeof Stripe !== "function") {
    return;
  }
  var button = document.getElementById("pay-card");
  var shown = document.getElementById("card-error");
  var stripe = Stripe(form.dataset.key);
  var card = stripe.elements().create("card");
  card.mount("#card-element");
  button.disabled = false;

  function fail(message) {
    shown.textContent = message;
    shown.hidden = false;
    button.disabled = false;
  }

  form.addEventListener("submit", function (event) {
    if (form.elements.payment_method.value) {
      return; // the PaymentMethod is in: the form goes to the gateway
    }
    event.preventDefault();
    button.disabled = true;
    shown.hidden = true;
    fetch(form.dataset.setup, { method: "POST", credentials: "same-origin" })
      .then(function (answer) {
        if (!answer.ok) {
          throw new Error("setup " + answer.status);
        }
        return answer.json();
      })
      .then(function (setup) {
        return stripe.confirmCardSetup(setup.client_secret, { payment_method: { card: card } });
      })
      .then(function (result) {
        if (result.error) {
          fail(result.error.message || String(result.error));
          return;
        }
        form.elements.payment_method.value = result.setupIntent.payment_method;
        form.submit();
      })
      .catch(function (error) {
        fail(String(error.message || error));
      });
  });
})();
