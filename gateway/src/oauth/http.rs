//! The HTTPS client every provider call goes through.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};

/// A provider call never waits longer than this.
const TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read from a provider (discovery, keys, tokens, API):
/// a broken or hostile provider cannot make the gateway buffer more.
pub const MAX_ANSWER: usize = 1 << 20;

/// A client that trusts the public web roots and, when given, one extra
/// root (`ca`); follows no redirects (a token or API answer that redirects
/// is unusable, and following one could send the code elsewhere).
pub fn client(ca: Option<&[u8]>) -> Result<Capped, String> {
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
    builder
        .build()
        .map(Capped)
        .map_err(|e| format!("HTTPS client: {e}"))
}

/// The client, with every answer's body capped at [`MAX_ANSWER`]; what the
/// `openidconnect` crate calls, and what GitHub's calls use directly.
#[derive(Clone)]
pub struct Capped(pub reqwest::Client);

/// Why a provider call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error("the answer is larger than {MAX_ANSWER} bytes")]
    TooLarge,
    #[error("{0}")]
    Request(String),
}

/// Reads a body of at most [`MAX_ANSWER`] bytes.
pub async fn read_capped(resp: &mut reqwest::Response) -> Result<Vec<u8>, CallError> {
    if resp.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
        return Err(CallError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(CallError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl<'c> AsyncHttpClient<'c> for Capped {
    type Error = CallError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, CallError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)?;
            let mut resp = self.0.execute(request).await?;
            let mut answer = http::Response::builder().status(resp.status());
            for (name, value) in resp.headers() {
                answer = answer.header(name, value);
            }
            let body = read_capped(&mut resp).await?;
            answer
                .body(body)
                .map_err(|e| CallError::Request(e.to_string()))
        })
    }
}
