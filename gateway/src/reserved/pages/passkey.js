// The passkey ceremony: the only script portcullis serves. The page holds
// the server's options as JSON (not executed), this turns them into a
// WebAuthn call and posts the browser's answer in an ordinary form.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const button = document.getElementById("passkey-button");
  const form = document.getElementById("passkey-form");
  const data = document.getElementById("passkey-options");
  const status = document.getElementById("passkey-status");
  if (!button || !form || !data) return;
  if (!window.PublicKeyCredential || !PublicKeyCredential.parseRequestOptionsFromJSON) {
    button.disabled = true;
    if (status) status.textContent = "This browser cannot use passkeys here.";
    return;
  }
  button.addEventListener("click", async () => {
    const options = JSON.parse(data.textContent).publicKey;
    button.disabled = true;
    try {
      const credential = form.dataset.ceremony === "create"
        ? await navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options) })
        : await navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options) });
      form.elements.credential.value = JSON.stringify(credential.toJSON());
      form.submit();
    } catch (e) {
      button.disabled = false;
      if (status) status.textContent = "The passkey was not used (" + e.name + "). Reload the page to try again.";
    }
  });
});
