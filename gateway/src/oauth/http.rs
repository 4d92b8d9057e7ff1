//! The HTTPS client every provider call goes through.

use std::time::Duration;

/// A provider call never waits longer than this.
const TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client that trusts the public web roots and, when given, one extra
/// root (`ca`); follows no redirects (a token or API answer that redirects
/// is unusable, and following one could send the code elsewhere).
pub fn client(ca: Option<&[u8]>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .https_only(true)
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = ca {
        let roots = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| format!("ca: not a PEM certificate bundle: {e}"))?;
        if roots.is_empty() {
            return Err("ca: no certificate in the file".into());
        }
        for root in roots {
            builder = builder.add_root_certificate(root);
        }
    }
    builder.build().map_err(|e| format!("HTTPS client: {e}"))
}
