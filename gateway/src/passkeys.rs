//! Passkeys through `webauthn-rs`: the relying party is the request's host
//! (its name as the RP id, `https://host[:port]` as the one origin), user
//! verification is required, and the library checks challenges, origins,
//! signatures and counters. What this adds: the account's WebAuthn user
//! handle, options the browser can use for a discoverable credential, and
//! JSON in and out (states go to the identity store, never to the browser).

use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};

/// Why a ceremony failed (logged; the person sees one fixed sentence).
#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    #[error("no relying party for host {0:?}")]
    Host(String),
    #[error("webauthn: {0}")]
    Ceremony(#[from] webauthn_rs::prelude::WebauthnError),
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the credential is not one of the account's")]
    Unknown,
}

/// The upper half of every portcullis user handle ("portcull").
const HANDLE_PREFIX: u64 = 0x706f_7274_6375_6c6c;

/// The WebAuthn user handle of an account: stable, not secret, and not the
/// name (which can change).
pub fn user_handle(account_id: i64) -> Uuid {
    Uuid::from_u64_pair(HANDLE_PREFIX, account_id as u64)
}

/// The account a user handle names, if it is one of ours.
pub fn account_of(handle: Uuid) -> Option<i64> {
    let (hi, lo) = handle.as_u64_pair();
    (hi == HANDLE_PREFIX).then_some(lo as i64)
}

/// The relying party for `host` (canonical, port included when not 443).
pub fn relying_party(host: &str) -> Result<Webauthn, PasskeyError> {
    let bad = || PasskeyError::Host(host.to_string());
    let origin = Url::parse(&format!("https://{host}")).map_err(|_| bad())?;
    let id = origin.host_str().ok_or_else(bad)?.to_string();
    Ok(WebauthnBuilder::new(&id, &origin)?
        .rp_name("portcullis")
        .build()?)
}

/// Options as the page hands them to the browser.
fn options_json(
    options: &impl serde::Serialize,
    discoverable: bool,
) -> Result<String, PasskeyError> {
    let mut v = serde_json::to_value(options)?;
    if discoverable {
        // A passkey that can sign in alone must live on the authenticator.
        if let Some(sel) = v.pointer_mut("/publicKey/authenticatorSelection") {
            sel["residentKey"] = "required".into();
            sel["requireResidentKey"] = true.into();
        }
    }
    // A modal ceremony started by a button, not the autofill kind.
    if let Some(map) = v.as_object_mut() {
        map.remove("mediation");
    }
    Ok(v.to_string())
}

/// Starts registering a passkey for an account: `(options, state)`.
pub fn start_registration(
    rp: &Webauthn,
    account_id: i64,
    name: &str,
    existing: &[Passkey],
) -> Result<(String, String), PasskeyError> {
    let exclude = existing.iter().map(|p| p.cred_id().clone()).collect();
    let (options, state) =
        rp.start_passkey_registration(user_handle(account_id), name, name, Some(exclude))?;
    Ok((
        options_json(&options, true)?,
        serde_json::to_string(&state)?,
    ))
}

/// The new passkey, if the browser's answer fits the stored state.
pub fn finish_registration(
    rp: &Webauthn,
    state: &str,
    credential: &str,
) -> Result<Passkey, PasskeyError> {
    let state: PasskeyRegistration = serde_json::from_str(state)?;
    let credential: RegisterPublicKeyCredential = serde_json::from_str(credential)?;
    Ok(rp.finish_passkey_registration(&credential, &state)?)
}

/// Starts a second-factor check with the account's passkeys.
pub fn start_authentication(
    rp: &Webauthn,
    passkeys: &[Passkey],
) -> Result<(String, String), PasskeyError> {
    let (options, state) = rp.start_passkey_authentication(passkeys)?;
    Ok((
        options_json(&options, false)?,
        serde_json::to_string(&state)?,
    ))
}

/// Checks the browser's answer against the state and the account's
/// passkeys; the index of the passkey used, updated (its counter).
pub fn finish_authentication(
    rp: &Webauthn,
    state: &str,
    credential: &str,
    passkeys: &mut [Passkey],
) -> Result<usize, PasskeyError> {
    let state: PasskeyAuthentication = serde_json::from_str(state)?;
    let credential: PublicKeyCredential = serde_json::from_str(credential)?;
    let result = rp.finish_passkey_authentication(&credential, &state)?;
    let used = passkeys
        .iter()
        .position(|p| p.cred_id() == result.cred_id())
        .ok_or(PasskeyError::Unknown)?;
    if let Some(p) = passkeys.get_mut(used) {
        p.update_credential(&result);
    }
    Ok(used)
}

/// Starts a sign-in by passkey alone: the browser offers whatever
/// passkeys it holds for this host.
pub fn start_discoverable(rp: &Webauthn) -> Result<(String, String), PasskeyError> {
    let (options, state) = rp.start_discoverable_authentication()?;
    Ok((
        options_json(&options, false)?,
        serde_json::to_string(&state)?,
    ))
}

/// The browser's answer to a discoverable sign-in and the account it
/// names (by user handle), before any check.
pub fn identify(
    rp: &Webauthn,
    credential: &str,
) -> Result<(PublicKeyCredential, i64), PasskeyError> {
    let credential: PublicKeyCredential = serde_json::from_str(credential)?;
    let (handle, _) = rp.identify_discoverable_authentication(&credential)?;
    let account = account_of(handle).ok_or(PasskeyError::Unknown)?;
    Ok((credential, account))
}

/// Checks a discoverable answer against the state and the named account's
/// passkeys; the index of the passkey used, updated.
pub fn finish_discoverable(
    rp: &Webauthn,
    state: &str,
    credential: &PublicKeyCredential,
    passkeys: &mut [Passkey],
) -> Result<usize, PasskeyError> {
    let state: DiscoverableAuthentication = serde_json::from_str(state)?;
    let used = passkeys
        .iter()
        .position(|p| AsRef::<[u8]>::as_ref(p.cred_id()) == credential.get_credential_id())
        .ok_or(PasskeyError::Unknown)?;
    let passkey = passkeys.get_mut(used).ok_or(PasskeyError::Unknown)?;
    let result = rp.finish_discoverable_authentication_v2(credential, state, &*passkey)?;
    passkey.update_credential(&result);
    Ok(used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_handles_name_accounts_and_nothing_else() {
        for id in [1, 42, i64::MAX] {
            assert_eq!(account_of(user_handle(id)), Some(id));
        }
        assert_eq!(account_of(Uuid::nil()), None);
        assert_eq!(account_of(Uuid::from_u64_pair(1, 1)), None);
    }

    #[test]
    fn the_relying_party_is_the_host() {
        assert!(relying_party("app.example.com").is_ok());
        assert!(relying_party("localhost:8443").is_ok());
        assert!(relying_party("a b").is_err());
    }

    #[test]
    fn registration_options_ask_for_a_resident_key_and_user_verification() {
        let rp = relying_party("app.example.com").unwrap();
        let (options, state) = start_registration(&rp, 7, "ann", &[]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&options).unwrap();
        let pk = &v["publicKey"];
        assert_eq!(pk["rp"]["id"], "app.example.com");
        assert_eq!(pk["authenticatorSelection"]["residentKey"], "required");
        assert_eq!(pk["authenticatorSelection"]["userVerification"], "required");
        assert!(v.get("mediation").is_none());
        assert!(!state.is_empty());
        // An answer that is not a credential is an error, not a panic.
        assert!(finish_registration(&rp, &state, "{}").is_err());
        assert!(finish_registration(&rp, "not json", "{}").is_err());
    }
}
