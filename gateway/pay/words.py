"""The payment page's words in the kiosk's languages, and the phone's language choice.

The page speaks the phone's language (its `Accept-Language`, RFC 9110 §12.5.4, highest
quality first) when the kiosk offers it (the price lines come from the kiosk in each of its
languages), else the station's own language.
"""

from __future__ import annotations

from collections.abc import Iterable

# Keys are the page's message names; each language has every key (a test checks it).
WORDS: dict[str, dict[str, str]] = {
    "en": {
        "enter_title": "Pay by phone",
        "enter": "Type the code the charging point shows below its address.",
        "code": "Code",
        "go": "Continue",
        "bad_code": "That is not a code. Check it on the charging point's screen.",
        "checking": "Checking your payment...",
        "pay_lightning": "Pay with Lightning",
        "lightning_note": "Pay an invoice from your own bitcoin Lightning wallet.",
        "card_number": "Card",
        "needs_script": "Paying by card needs JavaScript in your browser.",
        "card_pan": "Card number",
        "expiry_month": "Expiry month (MM)",
        "expiry_year": "Expiry year (YYYY)",
        "cvc": "Security code (CVC)",
        "card_holder": "Name on card",
        "card_invalid": "Check the card details: number, expiry date and security code.",
        "invoice_title": "Pay the invoice",
        "invoice": "Scan it with your Lightning wallet, or open it on this phone.",
        "open_wallet": "Open in wallet",
        "invoice_amount": "Invoice",
        "rate": "Rate",
        "refresh": "Check again",
        "late_title": "Paid too late",
        "late": "The code had expired when the payment arrived. Nothing is charged; "
        "the payment is returned.",
        "title": "Pay to charge",
        "station": "Charging point",
        "price": "Price",
        "hold": "Amount held on your card",
        "hold_note": "You pay only for what you charge; the rest is released.",
        "pay_card": "Pay by card",
        "pay_wallet": "Pay with your phone's wallet",
        "test_card": "Test card",
        "approve": "approved",
        "decline": "declined",
        "declined": "The payment was declined. Nothing was charged. Please try again.",
        "unusable_title": "This code cannot be used",
        "unusable": "It was used or has expired. Scan the code the charging point shows now.",
        "waiting_title": "Paid: starting",
        "waiting": "The charging point is starting your session.",
        "started_title": "Ready: plug in",
        "started": "Plug in your vehicle. Charging starts when it asks for energy.",
        "not_started_title": "Not started",
        "not_started": "The charging point could not start. The amount held is released.",
        "unknown_title": "Payment status unknown",
        "unknown": "Your payment could not be confirmed. Nothing is charged unless it is.",
        "stop": "Stop charging",
        "stopping": "Stopping...",
        "done_title": "Finished",
        "charged": "Charged",
        "released": "Nothing was charged; the amount held is released.",
        "receipt": "Your receipt",
        "change_title": "Your change",
        "change_note": "You paid up front; this is what your session did not cost. Make an "
        "invoice for exactly {sats} sat in your Lightning wallet and paste it here.",
        "change_invoice": "Invoice from your wallet",
        "change_button": "Get my change",
        "change_paying": "Paying your change...",
        "change_paid": "Paid back: {sats} sat ({owed})",
        "change_proof": "Payment hash",
        "change_not_an_invoice": "That is not a Lightning invoice. Copy the whole invoice from "
        "your wallet.",
        "change_wrong_network": "That invoice is for another bitcoin network. Make one on the "
        "network you paid from.",
        "change_expired": "That invoice has expired. Make a new one in your wallet.",
        "change_wrong_amount": "The invoice must be for exactly {sats} sat. Make a new one for "
        "that amount.",
        "change_already_paid": "That invoice is paid already. Make a new one in your wallet.",
        "change_nothing_owed": "No change is owed on this payment.",
        "change_refused": "The invoice could not be paid. Make a new one and try again; your "
        "change stays owed.",
        "change_unanswered": "The payment service cannot be reached right now. Your change stays "
        "owed: try again later.",
    },
    "de": {
        "enter_title": "Mit dem Telefon bezahlen",
        "enter": "Geben Sie den Code ein, den der Ladepunkt unter seiner Adresse zeigt.",
        "code": "Code",
        "go": "Weiter",
        "bad_code": "Das ist kein Code. Prüfen Sie ihn auf dem Display des Ladepunkts.",
        "checking": "Ihre Zahlung wird geprüft...",
        "pay_lightning": "Mit Lightning bezahlen",
        "lightning_note": "Bezahlen Sie eine Rechnung aus Ihrer eigenen Bitcoin-Lightning-Wallet.",
        "card_number": "Karte",
        "needs_script": "Für die Kartenzahlung braucht Ihr Browser JavaScript.",
        "card_pan": "Kartennummer",
        "expiry_month": "Ablaufmonat (MM)",
        "expiry_year": "Ablaufjahr (JJJJ)",
        "cvc": "Prüfnummer (CVC)",
        "card_holder": "Name auf der Karte",
        "card_invalid": "Prüfen Sie die Kartendaten: Nummer, Ablaufdatum und Prüfnummer.",
        "invoice_title": "Rechnung bezahlen",
        "invoice": "Scannen Sie sie mit Ihrer Lightning-Wallet oder öffnen Sie sie hier.",
        "open_wallet": "In der Wallet öffnen",
        "invoice_amount": "Rechnung",
        "rate": "Kurs",
        "refresh": "Erneut prüfen",
        "late_title": "Zu spät bezahlt",
        "late": "Der Code war abgelaufen, als die Zahlung eintraf. Es wird nichts belastet; "
        "die Zahlung wird erstattet.",
        "title": "Bezahlen und laden",
        "station": "Ladepunkt",
        "price": "Preis",
        "hold": "Auf Ihrer Karte reservierter Betrag",
        "hold_note": "Sie zahlen nur, was Sie laden; der Rest wird freigegeben.",
        "pay_card": "Mit Karte bezahlen",
        "pay_wallet": "Mit dem Wallet des Telefons bezahlen",
        "test_card": "Testkarte",
        "approve": "genehmigt",
        "decline": "abgelehnt",
        "declined": (
            "Die Zahlung wurde abgelehnt. Es wurde nichts belastet. Bitte erneut versuchen."
        ),
        "unusable_title": "Dieser Code ist nicht gültig",
        "unusable": (
            "Er wurde benutzt oder ist abgelaufen. Scannen Sie den aktuellen Code am Ladepunkt."
        ),
        "waiting_title": "Bezahlt: Start",
        "waiting": "Der Ladepunkt startet Ihren Ladevorgang.",
        "started_title": "Bereit: Fahrzeug anschließen",
        "started": "Schließen Sie Ihr Fahrzeug an. Das Laden beginnt, sobald es Energie anfordert.",
        "not_started_title": "Nicht gestartet",
        "not_started": (
            "Der Ladepunkt konnte nicht starten. Der reservierte Betrag wird freigegeben."
        ),
        "unknown_title": "Zahlungsstatus unbekannt",
        "unknown": (
            "Ihre Zahlung konnte nicht bestätigt werden. Ohne Bestätigung wird nichts belastet."
        ),
        "stop": "Laden beenden",
        "stopping": "Wird beendet...",
        "done_title": "Beendet",
        "charged": "Belastet",
        "released": "Es wurde nichts belastet; der reservierte Betrag wird freigegeben.",
        "receipt": "Ihr Beleg",
        "change_title": "Ihr Restbetrag",
        "change_note": "Sie haben im Voraus bezahlt; dies hat Ihr Ladevorgang nicht gekostet. "
        "Erstellen Sie in Ihrer Lightning-Wallet eine Rechnung über genau {sats} sat und fügen "
        "Sie sie hier ein.",
        "change_invoice": "Rechnung aus Ihrer Wallet",
        "change_button": "Restbetrag erhalten",
        "change_paying": "Ihr Restbetrag wird gezahlt...",
        "change_paid": "Zurückgezahlt: {sats} sat ({owed})",
        "change_proof": "Zahlungs-Hash",
        "change_not_an_invoice": "Das ist keine Lightning-Rechnung. Kopieren Sie die ganze "
        "Rechnung aus Ihrer Wallet.",
        "change_wrong_network": "Diese Rechnung gilt für ein anderes Bitcoin-Netz. Erstellen Sie "
        "eine im Netz, aus dem Sie bezahlt haben.",
        "change_expired": "Diese Rechnung ist abgelaufen. Erstellen Sie eine neue in Ihrer Wallet.",
        "change_wrong_amount": "Die Rechnung muss über genau {sats} sat lauten. Erstellen Sie "
        "eine neue über diesen Betrag.",
        "change_already_paid": "Diese Rechnung ist bereits bezahlt. Erstellen Sie eine neue in "
        "Ihrer Wallet.",
        "change_nothing_owed": "Für diese Zahlung ist kein Restbetrag offen.",
        "change_refused": "Die Rechnung konnte nicht bezahlt werden. Erstellen Sie eine neue und "
        "versuchen Sie es erneut; Ihr Restbetrag bleibt offen.",
        "change_unanswered": "Der Zahlungsdienst ist gerade nicht erreichbar. Ihr Restbetrag "
        "bleibt offen: versuchen Sie es später erneut.",
    },
    "fr": {
        "enter_title": "Payer par téléphone",
        "enter": "Saisissez le code que la borne affiche sous son adresse.",
        "code": "Code",
        "go": "Continuer",
        "bad_code": "Ce n'est pas un code. Vérifiez-le sur l'écran de la borne.",
        "checking": "Vérification de votre paiement...",
        "pay_lightning": "Payer avec Lightning",
        "lightning_note": "Payez une facture depuis votre propre portefeuille Lightning.",
        "card_number": "Carte",
        "needs_script": "Le paiement par carte nécessite JavaScript dans votre navigateur.",
        "card_pan": "Numéro de carte",
        "expiry_month": "Mois d'expiration (MM)",
        "expiry_year": "Année d'expiration (AAAA)",
        "cvc": "Cryptogramme (CVC)",
        "card_holder": "Nom sur la carte",
        "card_invalid": "Vérifiez les données de la carte : numéro, date d'expiration "
        "et cryptogramme.",
        "invoice_title": "Payer la facture",
        "invoice": "Scannez-la avec votre portefeuille Lightning ou ouvrez-la sur ce téléphone.",
        "open_wallet": "Ouvrir dans le portefeuille",
        "invoice_amount": "Facture",
        "rate": "Cours",
        "refresh": "Vérifier à nouveau",
        "late_title": "Payé trop tard",
        "late": "Le code avait expiré à l'arrivée du paiement. Rien n'est débité ; "
        "le paiement est restitué.",
        "title": "Payer pour recharger",
        "station": "Point de recharge",
        "price": "Prix",
        "hold": "Montant réservé sur votre carte",
        "hold_note": "Vous ne payez que ce que vous rechargez ; le reste est libéré.",
        "pay_card": "Payer par carte",
        "pay_wallet": "Payer avec le portefeuille du téléphone",
        "test_card": "Carte de test",
        "approve": "acceptée",
        "decline": "refusée",
        "declined": "Le paiement a été refusé. Rien n'a été débité. Veuillez réessayer.",
        "unusable_title": "Ce code n'est pas utilisable",
        "unusable": (
            "Il a été utilisé ou a expiré. Scannez le code affiché maintenant par la borne."
        ),
        "waiting_title": "Payé : démarrage",
        "waiting": "La borne démarre votre session.",
        "started_title": "Prêt : branchez",
        "started": "Branchez votre véhicule. La charge commence quand il demande de l'énergie.",
        "not_started_title": "Non démarré",
        "not_started": "La borne n'a pas pu démarrer. Le montant réservé est libéré.",
        "unknown_title": "État du paiement inconnu",
        "unknown": "Votre paiement n'a pas pu être confirmé. Rien n'est débité sans confirmation.",
        "stop": "Arrêter la charge",
        "stopping": "Arrêt en cours...",
        "done_title": "Terminé",
        "charged": "Débité",
        "released": "Rien n'a été débité ; le montant réservé est libéré.",
        "receipt": "Votre reçu",
        "change_title": "Votre monnaie",
        "change_note": "Vous avez payé d'avance ; voici ce que votre recharge n'a pas coûté. "
        "Créez dans votre portefeuille Lightning une facture d'exactement {sats} sat et collez-la "
        "ici.",
        "change_invoice": "Facture de votre portefeuille",
        "change_button": "Recevoir ma monnaie",
        "change_paying": "Paiement de votre monnaie...",
        "change_paid": "Remboursé : {sats} sat ({owed})",
        "change_proof": "Empreinte du paiement",
        "change_not_an_invoice": "Ce n'est pas une facture Lightning. Copiez toute la facture "
        "depuis votre portefeuille.",
        "change_wrong_network": "Cette facture est pour un autre réseau bitcoin. Créez-en une sur "
        "le réseau d'où vous avez payé.",
        "change_expired": "Cette facture a expiré. Créez-en une nouvelle dans votre portefeuille.",
        "change_wrong_amount": "La facture doit être d'exactement {sats} sat. Créez-en une "
        "nouvelle de ce montant.",
        "change_already_paid": "Cette facture est déjà payée. Créez-en une nouvelle dans votre "
        "portefeuille.",
        "change_nothing_owed": "Aucune monnaie n'est due sur ce paiement.",
        "change_refused": "La facture n'a pas pu être payée. Créez-en une nouvelle et réessayez ; "
        "votre monnaie reste due.",
        "change_unanswered": "Le service de paiement est injoignable pour l'instant. Votre "
        "monnaie reste due : réessayez plus tard.",
    },
    "nl": {
        "enter_title": "Betalen met de telefoon",
        "enter": "Typ de code die het laadpunt onder zijn adres toont.",
        "code": "Code",
        "go": "Verder",
        "bad_code": "Dat is geen code. Controleer hem op het scherm van het laadpunt.",
        "checking": "Uw betaling wordt gecontroleerd...",
        "pay_lightning": "Betalen met Lightning",
        "lightning_note": "Betaal een factuur vanuit uw eigen bitcoin-Lightning-wallet.",
        "card_number": "Kaart",
        "needs_script": "Voor betalen met een kaart heeft uw browser JavaScript nodig.",
        "card_pan": "Kaartnummer",
        "expiry_month": "Vervalmaand (MM)",
        "expiry_year": "Vervaljaar (JJJJ)",
        "cvc": "Beveiligingscode (CVC)",
        "card_holder": "Naam op de kaart",
        "card_invalid": "Controleer de kaartgegevens: nummer, vervaldatum en beveiligingscode.",
        "invoice_title": "Betaal de factuur",
        "invoice": "Scan deze met uw Lightning-wallet of open hem op deze telefoon.",
        "open_wallet": "Openen in wallet",
        "invoice_amount": "Factuur",
        "rate": "Koers",
        "refresh": "Opnieuw controleren",
        "late_title": "Te laat betaald",
        "late": "De code was verlopen toen de betaling binnenkwam. Er wordt niets "
        "afgeschreven; de betaling wordt teruggegeven.",
        "title": "Betalen om te laden",
        "station": "Laadpunt",
        "price": "Prijs",
        "hold": "Bedrag gereserveerd op uw kaart",
        "hold_note": "U betaalt alleen wat u laadt; de rest wordt vrijgegeven.",
        "pay_card": "Betalen met kaart",
        "pay_wallet": "Betalen met de wallet van je telefoon",
        "test_card": "Testkaart",
        "approve": "goedgekeurd",
        "decline": "geweigerd",
        "declined": "De betaling is geweigerd. Er is niets afgeschreven. Probeer het opnieuw.",
        "unusable_title": "Deze code kan niet worden gebruikt",
        "unusable": "Hij is gebruikt of verlopen. Scan de code die het laadpunt nu toont.",
        "waiting_title": "Betaald: starten",
        "waiting": "Het laadpunt start uw sessie.",
        "started_title": "Klaar: sluit aan",
        "started": "Sluit uw voertuig aan. Het laden begint zodra het om energie vraagt.",
        "not_started_title": "Niet gestart",
        "not_started": "Het laadpunt kon niet starten. Het gereserveerde bedrag wordt vrijgegeven.",
        "unknown_title": "Betaalstatus onbekend",
        "unknown": (
            "Uw betaling kon niet worden bevestigd. Zonder bevestiging wordt niets afgeschreven."
        ),
        "stop": "Laden stoppen",
        "stopping": "Wordt gestopt...",
        "done_title": "Klaar",
        "charged": "Afgeschreven",
        "released": "Er is niets afgeschreven; het gereserveerde bedrag wordt vrijgegeven.",
        "receipt": "Uw bon",
        "change_title": "Uw wisselgeld",
        "change_note": "U hebt vooraf betaald; dit heeft uw laadsessie niet gekost. Maak in uw "
        "Lightning-wallet een factuur van precies {sats} sat en plak die hier.",
        "change_invoice": "Factuur uit uw wallet",
        "change_button": "Mijn wisselgeld ontvangen",
        "change_paying": "Uw wisselgeld wordt betaald...",
        "change_paid": "Terugbetaald: {sats} sat ({owed})",
        "change_proof": "Betalingshash",
        "change_not_an_invoice": "Dat is geen Lightning-factuur. Kopieer de hele factuur uit uw "
        "wallet.",
        "change_wrong_network": "Die factuur is voor een ander bitcoinnetwerk. Maak er een op het "
        "netwerk waarmee u betaalde.",
        "change_expired": "Die factuur is verlopen. Maak een nieuwe in uw wallet.",
        "change_wrong_amount": "De factuur moet voor precies {sats} sat zijn. Maak een nieuwe "
        "voor dat bedrag.",
        "change_already_paid": "Die factuur is al betaald. Maak een nieuwe in uw wallet.",
        "change_nothing_owed": "Op deze betaling is geen wisselgeld verschuldigd.",
        "change_refused": "De factuur kon niet worden betaald. Maak een nieuwe en probeer het "
        "opnieuw; uw wisselgeld blijft verschuldigd.",
        "change_unanswered": "De betaaldienst is nu niet bereikbaar. Uw wisselgeld blijft "
        "verschuldigd: probeer het later opnieuw.",
    },
}


def accepted(header: str) -> list[str]:
    """The languages of an Accept-Language header, best first (primary subtags, lower case;
    q=0 excluded; ill-formed parts ignored)."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                continue
        primary = tag.strip().split("-")[0].lower()
        if primary and primary != "*" and quality > 0:
            ranked.append((-quality, index, primary))
    return [language for _, _, language in sorted(ranked)]


def choose(header: str, offered: Iterable[str], fallback: str) -> str:
    """The phone's first language the page and the kiosk both offer, else `fallback`."""
    available = [language for language in offered if language in WORDS]
    for language in accepted(header):
        if language in available:
            return language
    return fallback if fallback in WORDS else "en"
