// The payment page's phone wallet (Apple Pay, Google Pay) through Stripe: stripe.js's payment
// request (https://docs.stripe.com/js/payment_request/create) and its button. The section is
// hidden until the browser says it can pay: a browser with neither the W3C Payment Request
// API nor Apple Pay JS, a stripe.js without payment requests, or a phone with no wallet set
// up keeps it hidden, and the card form stays the way to pay. The wallet gives a Stripe
// PaymentMethod (pm_...), posted to the gateway, which holds the amount with it.
(function () {
  "use strict";
  var form = document.getElementById("wallet-form");
  var section = document.getElementById("way-wallet");
  if (!form || typeof Stripe !== "function") {
    return;
  }
  if (!window.PaymentRequest && !window.ApplePaySession) {
    return;
  }
  var stripe = Stripe(form.dataset.key);
  if (typeof stripe.paymentRequest !== "function") {
    return;
  }
  var request = stripe.paymentRequest({
    country: form.dataset.country,
    currency: form.dataset.currency,
    // A hold: the amount charged is what is delivered, so the wallet shows it as pending.
    total: { label: form.dataset.label, amount: Number(form.dataset.amount), pending: true },
    requestPayerName: false,
    requestPayerEmail: false
  });
  request.canMakePayment().then(function (result) {
    if (!result) {
      return;
    }
    var button = stripe.elements().create("paymentRequestButton", { paymentRequest: request });
    button.mount("#wallet-button");
    section.hidden = false;
  });
  request.on("paymentmethod", function (event) {
    // The wallet sheet closes; the gateway's answer (held, or declined with the form again)
    // is the next page.
    event.complete("success");
    form.elements.payment_method.value = event.paymentMethod.id;
    form.submit();
  });
})();
