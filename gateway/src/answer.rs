//! What a pipeline stage decides instead of forwarding, and the one function
//! that sends it (docs/behaviour.md, "Answers").
//!
//! Stages never write to the client: they return an [`Answer`] and
//! [`send`] turns it into a response with the same rules for every answer
//! (headers from `Extras`, keep-alive, lingering close).

use std::ops::ControlFlow;
use std::time::Duration;

use bytes::Bytes;
use pingora::prelude::*;

use crate::ctx::Ctx;
use crate::respond;

/// The outcome of a stage: go on, or answer.
pub type Step = ControlFlow<Answer>;

/// A response the gateway makes itself.
#[derive(Debug)]
pub enum Answer {
    /// An error page: JSON, or HTML for browsers.
    Error(u16),
    /// An error after which the connection is not reused (a request no
    /// well-behaved client sends, or a body that came too slowly).
    /// `drain`: what is left of the body is read and dropped before closing
    /// (never for bad framing, whose bytes mean nothing, nor a stalled body).
    Fatal { status: u16, drain: bool },
    /// 429 with `Retry-After` (the `RateLimit` headers are in `Extras`).
    TooMany(Duration),
    /// A redirect with an empty body.
    Redirect { status: u16, location: String },
    /// A page, asset or small text the gateway renders.
    Page {
        status: u16,
        content_type: &'static str,
        body: Bytes,
    },
    /// A status without a body (a CORS preflight, `OPTIONS *`).
    Empty(u16),
    /// An I/O error while answering (reading a form, `100 Continue`):
    /// handed to pingora, whose `fail_to_proxy` answers if it still can.
    Failed(Box<Error>),
}

impl Answer {
    /// A `303 See Other`, the answer to a form or a sign-in redirect.
    pub fn see_other(location: impl Into<String>) -> Answer {
        Answer::Redirect {
            status: 303,
            location: location.into(),
        }
    }

    /// An HTML page.
    pub fn html(status: u16, page: String) -> Answer {
        Answer::Page {
            status,
            content_type: "text/html; charset=utf-8",
            body: Bytes::from(page),
        }
    }

    /// 400 and the connection closes: a request no client sends by mistake.
    pub fn malformed() -> Answer {
        Answer::Fatal {
            status: 400,
            drain: true,
        }
    }

    /// The status the client gets.
    pub fn status(&self) -> u16 {
        match self {
            Answer::Error(s)
            | Answer::Fatal { status: s, .. }
            | Answer::Redirect { status: s, .. }
            | Answer::Page { status: s, .. }
            | Answer::Empty(s) => *s,
            Answer::TooMany(_) => 429,
            Answer::Failed(_) => 0,
        }
    }
}

/// `?` on a pingora result inside a stage: an error ends the pipeline.
pub trait OrAnswer<T> {
    /// `Continue(value)`, or `Break(Answer::Failed)`.
    fn or_answer(self) -> ControlFlow<Answer, T>;
}

impl<T> OrAnswer<T> for Result<T> {
    fn or_answer(self) -> ControlFlow<Answer, T> {
        match self {
            Ok(v) => ControlFlow::Continue(v),
            Err(e) => ControlFlow::Break(Answer::Failed(e)),
        }
    }
}

/// Sends `answer`. One rule for every answer: the connection closes when
/// the request body is not read to its end (leftover bytes would be parsed
/// as the next request) or the answer is fatal; the client is told so in
/// this very response, and then gets to read it before the socket closes
/// (`respond::linger`). `Err` only for [`Answer::Failed`] or a failed write.
pub async fn send(session: &mut Session, ctx: &mut Ctx, answer: Answer) -> Result<()> {
    let drain = match &answer {
        Answer::Fatal { drain, .. } => *drain,
        _ => true,
    };
    let fatal = matches!(answer, Answer::Fatal { .. });
    let body_left = !session.is_body_done();
    if fatal || body_left {
        session.set_keepalive(None);
    }
    ctx.status = answer.status();
    let out = &ctx.out;
    match answer {
        Answer::Error(status) | Answer::Fatal { status, .. } => {
            respond::error(session, out, status).await?
        }
        Answer::TooMany(retry_after) => respond::too_many(session, out, retry_after).await?,
        Answer::Redirect { status, location } => {
            respond::redirect(session, out, status, &location).await?
        }
        Answer::Page {
            status,
            content_type,
            body,
        } => respond::body(session, out, status, content_type, body).await?,
        Answer::Empty(status) => {
            let h = respond::header(status, out, None, 0)?;
            respond::send(session, h, Bytes::new()).await?
        }
        Answer::Failed(e) => return Err(e),
    }
    if body_left && drain {
        respond::linger(session).await;
    }
    Ok(())
}
