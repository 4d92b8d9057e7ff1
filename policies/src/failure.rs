//! The status a failed proxied request gets (pingora's `fail_to_proxy`).
//!
//! The glue translates pingora's error into a [`Failure`]; the mapping to a
//! status lives here so it can be read and tested without a socket.

/// Which side of the proxy failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The app, or the connection to it.
    Upstream,
    /// The client.
    Downstream,
    /// The gateway itself, or unknown.
    Internal,
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A stage chose this status (a body over `max_body`: 413; too slow: 408).
    Status(u16),
    /// A read or write timed out.
    Timeout,
    /// Connecting to the app timed out.
    ConnectTimeout,
    /// A read or write failed, or the connection closed.
    Closed,
    /// Anything else (a malformed message, a refused connection, ...).
    Other,
}

/// The status to answer with; `None` when the client is gone and nothing
/// can be sent.
pub fn status(side: Side, failure: Failure) -> Option<u16> {
    match (side, failure) {
        (_, Failure::Status(code)) => Some(code),
        (Side::Upstream, Failure::Timeout) | (_, Failure::ConnectTimeout) => Some(504),
        (Side::Upstream | Side::Internal, _) => Some(502),
        (Side::Downstream, Failure::Closed) => None,
        // A client that sends garbage or stalls mid-request.
        (Side::Downstream, Failure::Timeout | Failure::Other) => Some(400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_side_and_failure_has_one_status() {
        use Failure::*;
        use Side::*;
        let table = [
            (Upstream, Status(413), Some(413)),
            (Downstream, Status(408), Some(408)),
            (Upstream, Timeout, Some(504)),
            (Upstream, ConnectTimeout, Some(504)),
            (Internal, ConnectTimeout, Some(504)),
            (Upstream, Closed, Some(502)),
            (Upstream, Other, Some(502)),
            (Internal, Timeout, Some(502)),
            (Internal, Closed, Some(502)),
            (Internal, Other, Some(502)),
            (Downstream, Closed, None),
            (Downstream, Timeout, Some(400)),
            (Downstream, Other, Some(400)),
            (Downstream, ConnectTimeout, Some(504)),
        ];
        for (side, failure, want) in table {
            assert_eq!(status(side, failure), want, "{side:?} {failure:?}");
        }
    }
}
