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
    /// Manage the users file.
    #[command(subcommand)]
    User(UserCommand),
}

/// Which users file: `--users FILE`, else `[session] users` of the config.
#[derive(Debug, Args)]
pub struct UsersArg {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The users file itself (instead of finding it through the config)
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    pub users: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is read from the terminal, or one line from stdin.
    Add {
        name: String,
        /// A role (repeat for several)
        #[arg(long = "role", value_name = "R")]
        roles: Vec<String>,
        #[command(flatten)]
        file: UsersArg,
    },
    /// Set a new password; the user's existing sessions end.
    Passwd {
        name: String,
        #[command(flatten)]
        file: UsersArg,
    },
    /// Disable a user; the user's existing sessions end.
    Disable {
        name: String,
        #[command(flatten)]
        file: UsersArg,
    },
    /// Remove a user; the user's existing sessions end, and an account added
    /// later under the same name never inherits them.
    Remove {
        name: String,
        #[command(flatten)]
        file: UsersArg,
    },
    /// List users, their roles and state.
    List {
        #[command(flatten)]
        file: UsersArg,
    },
}
