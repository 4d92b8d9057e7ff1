//! Command-line interface (README "Running it").

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "A reverse-proxy security gateway: HTTPS, sessions, access rules, rate limits, security headers."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Config file [default: $PORTCULLIS_CONFIG, else ./portcullis.toml]
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    pub fn path(&self) -> PathBuf {
        self.config
            .clone()
            .or_else(|| std::env::var_os("PORTCULLIS_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("portcullis.toml"))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Run in the background (pingora daemon mode).
        #[arg(short = 'd', long)]
        daemon: bool,
        /// Take over the listening sockets of a running instance (zero-downtime upgrade).
        #[arg(short = 'u', long)]
        upgrade: bool,
    },
    /// Validate the config, secrets and certificate sources; print the routes table.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Also connect to what the config names (the Redis store) and ping it.
        #[arg(long)]
        online: bool,
    },
    /// Start a demo app behind the gateway on https://localhost:8443.
    Demo {
        #[arg(long, default_value_t = 8443)]
        https_port: u16,
        #[arg(long, default_value_t = 8080)]
        http_port: u16,
    },
    /// Print a new random 256-bit key, base64url.
    Secret,
    /// Manage accounts in the identity store ([store] of the config).
    #[command(subcommand)]
    User(UserCommand),
    /// The public-key assertion's signing keys in the identity store.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// A new signing key: published in the JWKS at once, signing after
    /// `[identity] key_grace`; the keys before it stay published for
    /// `old_key_published` (a day) after that.
    Rotate {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// The stored keys and which one signs.
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add an account; the password is read from the terminal, or one line from stdin.
    Add {
        name: String,
        /// A role (repeat for several)
        #[arg(long = "role", value_name = "R")]
        roles: Vec<String>,
        /// An e-mail address for the account
        #[arg(long, value_name = "ADDRESS")]
        email: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Set a new password; the account's sessions end.
    Passwd {
        name: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Disable an account; its sessions end.
    Disable {
        name: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Enable a disabled account (it signs in again; no session comes back).
    Enable {
        name: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Delete an account and its sessions; a name added again later never
    /// inherits them.
    #[command(alias = "remove")]
    Delete {
        name: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Replace an account's roles (none given: no roles); live sessions
    /// see the change within a second.
    Roles {
        name: String,
        roles: Vec<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Make a one-time invitation link (`[login] signup = "invite"`): the
    /// provider identity that opens it and signs in gets an account with
    /// these roles.
    Invite {
        /// A role of the account it creates (repeat for several)
        #[arg(long = "role", value_name = "R")]
        roles: Vec<String>,
        /// Only a verified address equal to this one may use it
        #[arg(long, value_name = "ADDRESS")]
        email: Option<String>,
        /// Days until it expires (1-90)
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u16).range(1..=90))]
        days: u16,
        /// The gateway's address, printed in front of the link
        #[arg(long, value_name = "URL", default_value = "https://YOUR-HOST")]
        base: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List accounts, their roles and state.
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Create every account of a users file (version 1's users.toml, hashes
    /// kept): all or none.
    Import {
        file: PathBuf,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Write every account to a users file (mode 0600), or to stdout.
    Export {
        file: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArg,
    },
}
