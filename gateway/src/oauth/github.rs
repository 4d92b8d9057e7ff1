//! GitHub (`kind = "github"`): OAuth 2.0 without OpenID Connect. The code
//! is exchanged at `token_url` (PKCE S256 sent too), then the person is read
//! from the REST API under `api_url`, as GitHub documents it:
//!
//! * `GET /user`: `id` (the subject: logins can be renamed, ids cannot), `login`;
//! * `GET /user/emails`: the primary address, only when `verified`;
//! * `GET /user/orgs` and `GET /user/teams`: `org` and `org/team` groups.
//!
//! GitHub Enterprise Server: `auth_url`/`token_url` on its host and
//! `api_url = "https://HOST/api/v3"`.

use serde::Deserialize;

use super::http::{read_capped, Capped};
use super::{Failure, Person, Start};
use crate::config::{GithubConf, ProviderConf};

/// Org and team lists are read as one page of this size.
const PER_PAGE: u32 = 100;

pub struct Github {
    auth_url: url::Url,
    token_url: String,
    api_url: String,
    client_id: String,
    client_secret: String,
    scopes: String,
    http: Capped,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct User {
    id: u64,
    login: String,
}

#[derive(Deserialize)]
struct Email {
    email: String,
    primary: bool,
    verified: bool,
}

#[derive(Deserialize)]
struct Org {
    login: String,
}

#[derive(Deserialize)]
struct Team {
    slug: String,
    organization: Org,
}

impl Github {
    pub fn new(p: &ProviderConf, g: &GithubConf, http: Capped) -> Github {
        Github {
            auth_url: g.auth_url.clone(),
            token_url: g.token_url.to_string(),
            api_url: g.api_url.as_str().trim_end_matches('/').to_string(),
            client_id: p.client_id.clone(),
            client_secret: p.client_secret.value.clone(),
            scopes: p.scopes.join(" "),
            http,
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "authorization {}, token {}, API {}",
            self.auth_url, self.token_url, self.api_url
        )
    }

    pub fn authorize_url(&self, start: &Start<'_>) -> String {
        let verifier = openidconnect::PkceCodeVerifier::new(start.pkce_verifier.to_string());
        let challenge = openidconnect::PkceCodeChallenge::from_code_verifier_sha256(&verifier);
        let mut url = self.auth_url.clone();
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", start.redirect_uri)
            .append_pair("scope", &self.scopes)
            .append_pair("state", start.state)
            .append_pair("code_challenge", challenge.as_str())
            .append_pair("code_challenge_method", "S256")
            .append_pair("allow_signup", "false");
        url.to_string()
    }

    pub async fn finish(&self, code: &str, start: &Start<'_>) -> Result<Person, Failure> {
        let token = self.exchange(code, start).await?;
        let user: User = self.get(&token, "/user").await?;
        let emails: Vec<Email> = self.get(&token, "/user/emails").await?;
        let orgs: Vec<Org> = self
            .get(&token, &format!("/user/orgs?per_page={PER_PAGE}"))
            .await?;
        let teams: Vec<Team> = self
            .get(&token, &format!("/user/teams?per_page={PER_PAGE}"))
            .await?;
        // Only the primary address, and only verified: GitHub lets anyone
        // add an address they do not own, unverified. An unverified primary
        // is no address at all here (GitHub never claimed it), so rules
        // that need one refuse with `email_missing`.
        let primary = emails.into_iter().find(|e| e.primary && e.verified);
        let mut groups: Vec<String> = orgs.into_iter().map(|o| o.login).collect();
        groups.extend(
            teams
                .into_iter()
                .map(|t| format!("{}/{}", t.organization.login, t.slug)),
        );
        Ok(Person {
            subject: user.id.to_string(),
            email_verified: primary.is_some(),
            email: primary.map(|e| e.email),
            hosted_domain: None,
            groups,
            login: Some(user.login),
            amr: Vec::new(),
        })
    }

    async fn exchange(&self, code: &str, start: &Start<'_>) -> Result<String, Failure> {
        let form = [
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.as_str()),
            ("code", code),
            ("redirect_uri", start.redirect_uri),
            ("code_verifier", start.pkce_verifier),
        ];
        let mut resp = self
            .http
            .0
            .post(&self.token_url)
            .header(http::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "GitHub token endpoint unreachable");
                Failure::Unreachable("token_endpoint")
            })?;
        let status = resp.status();
        let answer: TokenAnswer = json(&mut resp).await.map_err(|e| {
            tracing::warn!(%status, error = %e, "GitHub token endpoint answered garbage");
            Failure::Unreachable("token_response")
        })?;
        // GitHub answers a bad code with 200 and an `error` field.
        match (answer.access_token, answer.error) {
            (Some(t), None) if status.is_success() && !t.is_empty() => Ok(t),
            (_, error) => {
                tracing::info!(%status, error = error.as_deref().unwrap_or(""), "GitHub refused the code");
                Err(Failure::Refused("code_refused"))
            }
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        path: &str,
    ) -> Result<T, Failure> {
        let mut resp = self
            .http
            .0
            .get(format!("{}{path}", self.api_url))
            .bearer_auth(token)
            .header(http::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, path, "GitHub API unreachable");
                Failure::Unreachable("api")
            })?;
        if !resp.status().is_success() {
            tracing::warn!(status = %resp.status(), path, "GitHub API refused");
            return Err(Failure::Unreachable("api_status"));
        }
        json(&mut resp).await.map_err(|e| {
            tracing::warn!(error = %e, path, "GitHub API answered garbage");
            Failure::Unreachable("api_response")
        })
    }
}

/// A JSON body of at most `MAX_ANSWER` bytes.
async fn json<T: serde::de::DeserializeOwned>(resp: &mut reqwest::Response) -> Result<T, String> {
    let body = read_capped(resp).await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}
