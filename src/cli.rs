//! The command line, parsed once at start into one typed value.

use std::path::PathBuf;

use audit_db::DbUrl;
use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use uuid::Uuid;

/// Vigil: accountable remote support. Every session authenticated, end-to-end
/// encrypted, consent-gated, recorded and audited in a tamper-evident log.
#[derive(Debug, Parser)]
#[command(name = "vigil", version, propagate_version = true)]
pub struct Cli {
    /// Data directory of the commands that keep data (gateway, demo, audit,
    /// admin, recording verify): development certificates, and the audit log
    /// DIR/audit.db unless --db names another database [default: ./vigil-data]
    #[arg(long, value_name = "DIR", global = true)]
    pub data: Option<PathBuf>,

    /// Audit database of the same commands: sqlite://PATH or
    /// postgres://USER@HOST[:PORT]/DB [default: sqlite://./vigil-data/audit.db]
    #[arg(long, value_name = "URL", global = true)]
    pub db: Option<String>,

    /// Log more to stderr (-v: info, -vv: debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,

    /// The command's words, e.g. `retention verify`.
    #[arg(skip)]
    pub path: String,
}

/// Commands that keep no data of their own (clients of the gateway, tools on
/// files): `--data` and `--db` would mean nothing to them, so their help
/// leaves those out and they refuse them.
const KEEPS_NO_DATA: &[&str] = &[
    "login",
    "console",
    "applet",
    "convert",
    "recording encode",
    "recording info",
    "recording frame",
    "recording repair",
    "retention verify",
    "audit verify-proof",
    "webhook receive",
];

impl Cli {
    /// The command line of this process, or the exit clap makes on `--help`
    /// and on what it cannot parse.
    pub fn from_env() -> Cli {
        Self::from_argv(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parses a command line.
    pub fn from_argv<I, T>(argv: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Self::command_line().try_get_matches_from(argv)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        let mut words = Vec::new();
        let mut at = &matches;
        while let Some((word, sub)) = at.subcommand() {
            words.push(word);
            at = sub;
        }
        cli.path = words.join(" ");
        Ok(cli)
    }

    /// The clap command, with `--data` and `--db` hidden where they mean
    /// nothing. Clap shows a global option on every subcommand unless the
    /// subcommand has its own of that id; a hidden copy is that (still
    /// global, so a value given there still reaches [`Cli`] to be refused).
    fn command_line() -> clap::Command {
        fn hide(command: clap::Command, words: &[&str], hidden: &[clap::Arg]) -> clap::Command {
            match words {
                [] => command.args(hidden),
                [first, rest @ ..] => command.mut_subcommand(*first, |c| hide(c, rest, hidden)),
            }
        }
        let command = Cli::command();
        let hidden: Vec<clap::Arg> = command
            .get_arguments()
            .filter(|a| ["data", "db"].contains(&a.get_id().as_str()))
            .map(|a| a.clone().hide(true))
            .collect();
        KEEPS_NO_DATA.iter().fold(command, |command, path| {
            hide(command, &path.split(' ').collect::<Vec<_>>(), &hidden)
        })
    }

    /// The command's words if it keeps no data of its own.
    pub fn keeps_no_data(&self) -> Option<&str> {
        KEEPS_NO_DATA
            .contains(&self.path.as_str())
            .then_some(self.path.as_str())
    }

    /// The audit database the command works on. Parsed here rather than by
    /// clap so that a bad URL is reported in one line like every other error.
    pub fn db_url(&self) -> Result<DbUrl, audit_db::Error> {
        match (&self.db, &self.data) {
            (Some(url), _) => url.parse(),
            (None, _) => Ok(DbUrl::in_data_dir(self.data_dir())),
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.data
            .clone()
            .unwrap_or_else(|| PathBuf::from("./vigil-data"))
    }
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway that brokers and relays support sessions
    Gateway(GatewayArgs),
    /// Log in to a gateway as a technician (password on stdin) and show your permissions
    Login(LoginArgs),
    /// The technician's console: create and pick up sessions, chat, files, permissions
    Console(ConsoleArgs),
    /// The end user's applet: join a session by PIN or GUID
    Applet(AppletArgs),
    /// Run a whole support session on this machine (gateway, console and applet
    /// as child processes) and leave its audit trail in the data directory
    Demo,
    /// Read and check the audit log
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Administer Vigil
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Make, inspect, check and repair `.vrec` session recordings
    #[command(subcommand)]
    Recording(RecordingCommand),
    /// Convert a recording, or every recording under a directory, to MP4
    /// (H.264) or AVI (MJPEG) for ordinary video players
    Convert(ConvertArgs),
    /// Deliver CRM webhook posts, list deliveries, replay them
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Compliance reports over the audit log; every run is itself audited
    Report(ReportArgs),
    /// Archive, purge and check what retention policy says (see `admin retention`)
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// The web portal: find sessions, read their timelines and transcripts,
    /// play recordings in the browser (HTTPS; the gateway's accounts and
    /// rules; every view audited)
    Web(WebArgs),
}

/// `vigil web`.
#[derive(Debug, Args)]
pub struct WebArgs {
    /// Address to listen on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    pub listen: std::net::SocketAddr,
    #[command(flatten)]
    pub identity: IdentityArgs,
    #[command(flatten)]
    pub portal: PortalArgs,
}

/// What the portal needs beside its address (`vigil web`, `vigil gateway --web`).
#[derive(Debug, Args)]
pub struct PortalArgs {
    /// A directory recordings were moved to, where the portal looks for a
    /// recording (by its file name) that is no longer where the log says the
    /// console wrote it (repeatable)
    #[arg(long = "recordings", value_name = "DIR")]
    pub recordings: Vec<PathBuf>,
}

/// The TLS certificate a server presents.
#[derive(Debug, Args)]
pub struct IdentityArgs {
    /// PEM certificate chain [default: a development CA and certificate made
    /// once in the data directory]
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Extra DNS name or address for the development certificate (repeatable)
    #[arg(long = "dev-name", value_name = "NAME")]
    pub dev_names: Vec<String>,
}

/// `vigil retention ...`
#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Move events past their online period to archive bundles and purge
    /// archived ones past their archive period (the gateway does this daily);
    /// safe to interrupt: the next run finishes what one began
    Run {
        /// Decide and count, change nothing
        #[arg(long)]
        dry_run: bool,
        /// Decide as of this time instead of now (RFC 3339 or YYYY-MM-DD; never
        /// before the last run's)
        #[arg(long, value_name = "T", value_parser = audit_db::time_us::parse)]
        as_of: Option<i64>,
        #[command(flatten)]
        archive: ArchiveDirArgs,
        #[command(flatten)]
        log_key: LogKeyArgs,
        /// Print the summary as one JSON object
        #[arg(long)]
        json: bool,
        /// Events per bundle at most (for tests that want many bundles)
        #[arg(long, hide = true, default_value_t = retention::run::BUNDLE_EVENTS)]
        bundle_events: usize,
        #[command(flatten)]
        by: AsAdmin,
    },
    /// Check archive bundles on their own (no database): their files, every
    /// event, and the signed checkpoint they are proven against; exit 0 if
    /// all hold, 1 naming the first that does not
    Verify {
        /// Bundles (manifest or data file), or directories of them
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The log's public key (as `vigil audit key` prints it), or a file
        /// holding it [default: the key each manifest names]
        #[arg(long, value_name = "PUBKEY")]
        key: Option<String>,
        /// One JSON object per bundle
        #[arg(long)]
        json: bool,
    },
    /// Put archive bundles back into a separate, new database (--db) for an
    /// investigation: queries and reports read it like a log; it takes no
    /// new events, and `audit verify` checks it against the bundles' signed
    /// checkpoints
    Restore {
        /// Bundles (manifest or data file), or directories of them
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The log's public key (as `vigil audit key` prints it), or a file
        /// holding it [default: the key each manifest names]
        #[arg(long, value_name = "PUBKEY")]
        key: Option<String>,
    },
}

/// Where archive bundles are.
#[derive(Debug, Args)]
pub struct ArchiveDirArgs {
    /// The archive directory [default: DATA/archive, made on first use]
    #[arg(long, value_name = "DIR")]
    pub archive_dir: Option<PathBuf>,
}

impl ArchiveDirArgs {
    /// The directory given, or the data directory's (made if missing).
    pub fn dir(&self, data_dir: &std::path::Path) -> std::io::Result<PathBuf> {
        match &self.archive_dir {
            Some(dir) => Ok(dir.clone()),
            None => {
                use std::os::unix::fs::DirBuilderExt;
                let dir = data_dir.join("archive");
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)?;
                Ok(dir)
            }
        }
    }
}

/// `vigil convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The recording, or a directory: every `.vrec` under it (then --out is needed)
    pub input: PathBuf,
    /// The video to write: .mp4 or .avi
    #[arg(required_unless_present = "out", conflicts_with = "out")]
    pub output: Option<PathBuf>,
    /// Write into this directory, under the recording's name (and, for a
    /// directory of recordings, its place under it); outputs already made
    /// from the same recording with the same options are skipped
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The kind of video written into --out
    #[arg(long, value_enum, default_value_t = VideoFormat::Mp4, requires = "out")]
    pub format: VideoFormat,
    /// Recordings converted at once with --out (default: one per CPU core)
    #[arg(long, value_name = "N", requires = "out", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// Start here: [[HH:]MM:]SS[.mmm] since the recording started
    #[arg(long, value_name = "T", value_parser = parse_clock)]
    pub from: Option<u64>,
    /// End here: [[HH:]MM:]SS[.mmm]
    #[arg(long, value_name = "T", value_parser = parse_clock)]
    pub to: Option<u64>,
    /// Output size, e.g. 1280:720 (made even)
    #[arg(long, value_name = "W:H", value_parser = parse_scale)]
    pub scale: Option<(u32, u32)>,
    /// x264 CRF for MP4 (default 20), MJPEG q for AVI (default 4); lower is better
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=51))]
    pub quality: Option<u32>,
    /// Stamp the session GUID and the wall-clock time on every frame, for evidence
    #[arg(long)]
    pub burn_in: bool,
    /// Replace OUTPUT if it exists
    #[arg(long)]
    pub force: bool,
}

/// The kind of video `vigil convert --out` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VideoFormat {
    /// H.264 in MP4
    Mp4,
    /// MJPEG in AVI
    Avi,
}

/// `vigil recording ...`
#[derive(Debug, Subcommand)]
pub enum RecordingCommand {
    /// Make a recording from raw BGRA frames on stdin, through the live session's
    /// codec (e.g. `ffmpeg -i clip.mkv -f rawvideo -pix_fmt bgra - | vigil recording encode ...`)
    Encode {
        /// Frame size of the input
        #[arg(long, value_name = "WxH", value_parser = parse_size)]
        size: (u32, u32),
        /// Frames per second of the input
        #[arg(long, value_name = "N", value_parser = parse_fps)]
        fps: f64,
        /// The recording to write (must not exist)
        #[arg(short, long, value_name = "OUT.vrec")]
        output: PathBuf,
    },
    /// Duration, size, frames, resolution and markers of a recording
    Info {
        file: PathBuf,
        /// One JSON object
        #[arg(long)]
        json: bool,
    },
    /// Write one frame, bit-exact, as PNG
    Frame {
        file: PathBuf,
        /// The frame on screen at this time since the start: [[HH:]MM:]SS[.mmm]
        #[arg(long, value_name = "HH:MM:SS.mmm", value_parser = parse_clock,
              required_unless_present = "index", conflicts_with = "index")]
        at: Option<u64>,
        /// The Nth frame (from 0) that changed the screen
        #[arg(long, value_name = "N")]
        index: Option<u64>,
        /// The PNG to write
        #[arg(short, long, value_name = "FRAME.png")]
        output: PathBuf,
        /// Replace OUTPUT if it exists
        #[arg(long)]
        force: bool,
    },
    /// Make a cut-off recording finished again: keep every whole chunk, save the
    /// rest to FILE.tail, write a new index
    Repair { file: PathBuf },
    /// Check a recording against the audit log (--db, or the data directory's):
    /// exit 0 if complete, 1 if truncated, altered or unknown to the log
    Verify {
        file: PathBuf,
        /// One JSON object
        #[arg(long)]
        json: bool,
    },
}

/// `vigil audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Prove the log was not altered: exit 0 if intact, 1 with the first break if not
    Verify {
        /// Also require the event at SEQ to have HASH (a head printed or published earlier);
        /// catches a log rewritten from the start
        #[arg(long, value_name = "SEQ:HASH", value_parser = parse_anchor)]
        anchor: Option<audit_db::Anchor>,
        /// Also require the log to extend each of these signed checkpoints (kept
        /// elsewhere): catches events removed from the end, and a log rewritten
        /// and re-hashed whole
        #[arg(long, value_name = "FILE", num_args = 1..)]
        checkpoint: Vec<PathBuf>,
        /// The public key the checkpoints must be signed with, or a file holding
        /// it [default: the log key's]
        #[arg(long, value_name = "PUBKEY", requires = "checkpoint")]
        key: Option<String>,
        #[command(flatten)]
        log_key: LogKeyArgs,
        /// Print the result as one JSON object
        #[arg(long)]
        json: bool,
    },
    /// List events, oldest first, filtered by session, actor, type and time
    Query(QueryArgs),
    /// Print the log's public key, which checks its checkpoints and proofs
    /// (the signing key is made on first use)
    Key {
        #[command(flatten)]
        log_key: LogKeyArgs,
    },
    /// Sign a checkpoint of the log (its size and Merkle root) to keep elsewhere
    Checkpoint {
        /// Write it to FILE instead of stdout
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        log_key: LogKeyArgs,
    },
    /// Write one event with its inclusion proof against a signed checkpoint:
    /// evidence that `vigil audit verify-proof` checks without the database
    Prove {
        /// The event
        #[arg(long)]
        seq: i64,
        /// Prove it in the log's first SIZE events, in a checkpoint signed now
        /// [default: the whole log]
        #[arg(long, conflicts_with = "checkpoint")]
        size: Option<u64>,
        /// Prove it against this checkpoint (one kept earlier) instead
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// Write the proof to FILE instead of stdout
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        log_key: LogKeyArgs,
    },
    /// Check a proof from `vigil audit prove` with the log's public key alone:
    /// exit 0 if it holds
    VerifyProof {
        /// The proof file
        file: PathBuf,
        /// The log's public key (as `vigil audit key` prints it), or a file holding it
        #[arg(long, value_name = "PUBKEY")]
        key: String,
    },
}

/// Where the log's signing key is.
#[derive(Debug, Args)]
pub struct LogKeyArgs {
    /// The log's signing key (Ed25519, a note signer key, mode 0600)
    /// [default: DATA/audit-key, made on first use]
    #[arg(long, value_name = "FILE")]
    pub log_key: Option<PathBuf>,
}

impl LogKeyArgs {
    /// The key file in `data_dir` unless another was given.
    pub fn path(&self, data_dir: &std::path::Path) -> PathBuf {
        self.log_key
            .clone()
            .unwrap_or_else(|| data_dir.join(audit_db::checkpoint::KEY_FILE))
    }
}

/// Filters and format of `vigil audit query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Only this session (GUID)
    #[arg(long, value_name = "GUID")]
    pub session: Option<Uuid>,
    /// Only this actor, e.g. technician:ann@example.com
    #[arg(long)]
    pub actor: Option<String>,
    /// Only this event type, e.g. login.failed
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_type)]
    pub kind: Option<String>,
    /// Only events that occurred at or after T (RFC 3339 or YYYY-MM-DD)
    #[arg(long, value_name = "T", value_parser = audit_db::time_us::parse)]
    pub since: Option<i64>,
    /// Only events that occurred before T (RFC 3339 or YYYY-MM-DD)
    #[arg(long, value_name = "T", value_parser = audit_db::time_us::parse)]
    pub until: Option<i64>,
    /// One JSON object per line instead of a table
    #[arg(long)]
    pub json: bool,
    /// Read the archive bundles in DIR too, as if their events were online
    #[arg(long, value_name = "DIR")]
    pub archive: Option<PathBuf>,
}

/// `vigil gateway`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Address to listen on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7443")]
    pub listen: std::net::SocketAddr,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// Also serve the web portal (as `vigil web`) on this address, from this process
    #[arg(long, value_name = "ADDR")]
    pub web: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub portal: PortalArgs,
    /// This gateway's name, recorded with the sessions it creates; at start
    /// it ends, in the log, those of its sessions an earlier run left open.
    /// Give each gateway sharing a database its own [default: the host name]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Time a client has to finish TLS and send its first request
    /// (1 s to 5 min)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_handshake_timeout)]
    pub handshake_timeout: std::time::Duration,
    /// Time live sessions get to end by themselves on SIGINT/SIGTERM (up to 1 h)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_drain_timeout)]
    pub drain_timeout: std::time::Duration,
    /// Diagnostic: write the bytes relayed for each session to DIR (they are
    /// the inner TLS records: this shows what the gateway can see)
    #[arg(long, value_name = "DIR")]
    pub relay_capture: Option<PathBuf>,
    /// Do not deliver CRM webhook posts from this process (run `vigil webhook
    /// run` instead); posts are kept for whichever worker runs
    #[arg(long)]
    pub no_webhooks: bool,
    /// Sign a checkpoint of the audit log into DATA/checkpoints/ this often
    /// (when it has grown), and at start and stop (1 s to 24 h)
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_checkpoint_every)]
    pub checkpoint_every: std::time::Duration,
    /// Run retention (archive and purge as `admin retention` says) at start
    /// and this often after (1 s to 7 days), or "never"
    #[arg(long, value_name = "DURATION|never", default_value = "1d", value_parser = parse_retention_every)]
    pub retention_every: OrNever<std::time::Duration>,
    #[command(flatten)]
    pub archive: ArchiveDirArgs,
    #[command(flatten)]
    pub log_key: LogKeyArgs,
}

/// Which gateway a client talks to, and how it trusts it.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The gateway, HOST:PORT
    #[arg(long, value_name = "ADDR")]
    pub gateway: String,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// How a client trusts the gateway.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct TrustArgs {
    /// CA certificate (PEM) the gateway's certificate must chain to
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// SHA-256 fingerprint of the gateway's certificate or CA (as `vigil gateway` prints it)
    #[arg(long, value_name = "HEX")]
    pub fingerprint: Option<String>,
}

/// `vigil login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The technician's email
    #[arg(long, value_name = "EMAIL")]
    pub user: String,
    /// Also set a new password (second line of stdin), e.g. when the old one expired
    #[arg(long)]
    pub new_password: bool,
}

/// `vigil console`.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The technician's email
    #[arg(long, value_name = "EMAIL")]
    pub user: String,
    /// Read the password from this file (first line) instead of the first line of stdin
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Run the commands in FILE instead of reading them from stdin
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    /// Where files from end users are saved
    #[arg(long, value_name = "DIR", default_value = "./vigil-downloads")]
    pub download_dir: PathBuf,
    /// Where audit events wait when the gateway cannot take them; they are
    /// resent at the next login or command
    #[arg(
        long,
        value_name = "FILE",
        default_value = "./vigil-console-spool.jsonl"
    )]
    pub spool: PathBuf,
    /// Record every picked-up session's screen and events into DIR (also where
    /// /record on writes) [default for /record on: ./vigil-recordings]
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Port on 127.0.0.1 for the console page (screen, session, chat, files) [default: any free port]
    #[arg(long, value_name = "PORT", default_value = "0")]
    pub viewer_port: u16,
    /// One JSON object per line instead of text
    #[arg(long)]
    pub json: bool,
}

/// How the applet answers consent prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConsentArg {
    /// Ask the end user on the terminal
    Ask,
    /// Consent to everything the technician's group is granted
    GrantAll,
    /// Consent to nothing
    DenyAll,
}

/// `vigil applet`.
#[derive(Debug, Args)]
pub struct AppletArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The six-digit PIN the technician gave you
    #[arg(
        long,
        value_name = "N",
        required_unless_present = "session",
        conflicts_with = "session"
    )]
    pub pin: Option<String>,
    /// The session GUID instead of a PIN
    #[arg(long, value_name = "GUID")]
    pub session: Option<uuid::Uuid>,
    /// How consent prompts are answered
    #[arg(long, value_enum, default_value = "ask")]
    pub consent: ConsentArg,
    /// The X display the technician may view and control, e.g. :0 (without
    /// it, both are refused: the end user shared no display)
    #[arg(long, value_name = ":N")]
    pub display: Option<String>,
    /// Screen updates per second at most (1 to 60)
    #[arg(long, value_name = "N", default_value = "10", value_parser = clap::value_parser!(u32).range(1..=60))]
    pub fps: u32,
    /// Where files from the technician are saved
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub download_dir: PathBuf,
    /// One JSON object per line instead of text
    #[arg(long)]
    pub json: bool,
}

/// `vigil admin ...`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Manage technician accounts
    #[command(subcommand)]
    User(UserCommand),
    /// Manage technician groups and their permissions
    #[command(subcommand)]
    Group(GroupCommand),
    /// Show or set the access policy (passwords, lockout, idle logoff, PINs)
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage CRM webhook endpoints
    #[command(subcommand)]
    Webhook(WebhookAdminCommand),
    /// Show or set how long each kind of record is kept, online and archived
    #[command(subcommand)]
    Retention(RetentionAdminCommand),
    /// Place, list and release legal holds (held records are never purged or erased)
    #[command(subcommand)]
    Hold(HoldCommand),
    /// Erase one session's chat text, file names and recordings, online and in
    /// the archive (a privacy request); the log still verifies
    Erase {
        /// The session (GUID)
        #[arg(long, value_name = "GUID")]
        session: uuid::Uuid,
        /// Its chat messages' text
        #[arg(long)]
        chat: bool,
        /// The names of files that crossed it
        #[arg(long)]
        files: bool,
        /// Its recording files
        #[arg(long)]
        recording: bool,
        /// Why (e.g. the request's reference); recorded in the log
        #[arg(long, value_name = "TEXT")]
        reason: String,
        #[command(flatten)]
        archive: ArchiveDirArgs,
        #[command(flatten)]
        log_key: LogKeyArgs,
        #[command(flatten)]
        by: AsAdmin,
    },
    /// Append an administrator's note to the audit log (e.g. "investigation opened")
    Note {
        /// The note; omit it with --stdin
        #[arg(required_unless_present = "stdin", conflicts_with = "stdin")]
        text: Option<String>,
        /// Read notes from standard input, one per line, printing a JSON receipt
        /// for each as soon as it is durable
        #[arg(long)]
        stdin: bool,
        /// The administrator to record [default: the local user@host]
        #[arg(long = "as", value_name = "NAME")]
        admin: Option<String>,
    },
}

/// `vigil report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The report (or `verify`, to check an evidence bundle)
    #[arg(value_enum)]
    pub report: ReportType,
    /// With `verify`: the bundle to check (against the log too, where there is one)
    #[arg(value_name = "BUNDLE", required_if_eq("report", "verify"))]
    pub bundle_to_check: Option<PathBuf>,
    /// Only what happened at or after T (a session: created at or after T)
    #[arg(long, value_name = "T", value_parser = audit_db::time_us::parse)]
    pub since: Option<i64>,
    /// Only what happened before T
    #[arg(long, value_name = "T", value_parser = audit_db::time_us::parse)]
    pub until: Option<i64>,
    /// Only this technician's sessions or logins
    #[arg(long, value_name = "EMAIL")]
    pub technician: Option<String>,
    /// Only this group's sessions
    #[arg(long, value_name = "G")]
    pub group: Option<String>,
    /// Only this session
    #[arg(long, value_name = "GUID")]
    pub session: Option<Uuid>,
    /// Only end users (or logins) from this network, e.g. 10.0.0.0/8
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
    pub ip: Option<ipnet::IpNet>,
    /// Output format
    #[arg(long, value_enum, default_value = "table")]
    pub format: ReportFormat,
    /// Show times and count days in ZONE (table and HTML only; CSV, JSON
    /// lines and bundles are always UTC): an IANA name such as
    /// Europe/Berlin, UTC, or an offset such as +05:30
    #[arg(long, value_name = "ZONE", value_parser = parse_zone)]
    pub tz: Option<reporter::zone::Zone>,
    /// Write to FILE instead of standard output (made whole, then renamed)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace an existing --output or --bundle file
    #[arg(long)]
    pub force: bool,
    /// Write an evidence bundle instead: the report as CSV and HTML, the
    /// exact events it was derived from, and a manifest with the log
    /// position and every file's SHA-256 (the log is verified first)
    #[arg(long, value_name = "OUT.zip", conflicts_with = "output")]
    pub bundle: Option<PathBuf>,
    /// Recordings: read every file through and judge it against the log
    #[arg(long)]
    pub check: bool,
    /// Verify the whole hash chain first, and say so in the report's stamp
    /// (a broken log makes no report)
    #[arg(long)]
    pub verify: bool,
    /// Read the archive bundles in DIR too, as if their events were online
    #[arg(long, value_name = "DIR")]
    pub archive: Option<PathBuf>,
    #[command(flatten)]
    pub by: AsAdmin,
}

/// A report's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportType {
    /// One row per session: who, whom, when, how long, what was granted, files, chat, recording
    Sessions,
    /// Every chat line, with its session and sender
    Chat,
    /// Every file that crossed, with both ends' MD5 and SHA-256 and whether they matched
    Files,
    /// Logins, failures by reason, locks, unlocks and logoffs, with addresses
    Logins,
    /// Every administrative change and note, by whom
    Admin,
    /// Who ran which report, with its filters (this command's own audit trail)
    Access,
    /// Requests, grants and denials per permission and technician
    Permissions,
    /// Sessions never picked up, joins abandoned, joins refused
    Missed,
    /// Per day and technician: sessions, mean and p95 duration, failed logins, denials
    Summary,
    /// Every finished recording: file, size, SHA-256; with --check, its duration
    /// and whether the file is still the one the log recorded
    Recordings,
    /// Check an evidence bundle: every file against its manifest and, given the
    /// log, every event against the event the log holds at its seq
    Verify,
}

/// A report's output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Aligned columns for a terminal
    Table,
    /// RFC 4180, a header row, formulas neutralised for spreadsheets
    Csv,
    /// One JSON object per row
    Jsonl,
    /// One self-contained HTML file with charts (sessions, summary), printable;
    /// the log is always verified first
    Html,
}

fn parse_zone(text: &str) -> Result<reporter::zone::Zone, String> {
    reporter::zone::Zone::parse(text).map_err(|e| e.to_string())
}

fn parse_cidr(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{text:?} is not an IP network (CIDR) or address"))
}

/// `vigil admin webhook ...`
#[derive(Debug, Subcommand)]
pub enum WebhookAdminCommand {
    /// Add an endpoint; prints its id and its signing secret (shown only once)
    Add {
        /// Where posts go (https; http with --allow-http)
        url: String,
        /// Only this technician group's sessions (repeatable) [default: every group]
        #[arg(long = "group", value_name = "G")]
        groups: Vec<String>,
        /// Webhook types, comma-separated: session.started, session.ended, or any
        /// audit type (chat.message, login.failed...) [default: session.started,session.ended]
        #[arg(long, value_name = "TYPES", value_delimiter = ',')]
        events: Vec<String>,
        /// Leave chat transcripts out of its posts
        #[arg(long)]
        exclude_chat: bool,
        /// Trust these PEM certificates for its TLS, beside the system's
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// Allow a loopback, private or link-local address (refused by default)
        #[arg(long)]
        allow_private: bool,
        /// Allow plain http
        #[arg(long)]
        allow_http: bool,
        /// Free text for operators
        #[arg(long, value_name = "TEXT", default_value = "")]
        description: String,
        #[command(flatten)]
        by: AsAdmin,
    },
    /// List the endpoints
    List {
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Stop posting to an endpoint (what happens meanwhile is kept for it)
    Disable {
        /// The endpoint's id
        id: String,
        #[command(flatten)]
        by: AsAdmin,
    },
    /// Post to an endpoint again, including what happened while it was disabled
    Enable {
        /// The endpoint's id
        id: String,
        #[command(flatten)]
        by: AsAdmin,
    },
    /// Remove an endpoint with its pending posts and delivery log
    Remove {
        /// The endpoint's id
        id: String,
        #[command(flatten)]
        by: AsAdmin,
    },
    /// Give an endpoint a new signing secret; the old one keeps signing during the grace
    RotateSecret {
        /// The endpoint's id
        id: String,
        /// How long the old secret also signs every post
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_grace)]
        grace: std::time::Duration,
        #[command(flatten)]
        by: AsAdmin,
    },
    /// Post a vigil.test message to an endpoint now and print what came of it
    Test {
        /// The endpoint's id
        id: String,
    },
}

/// `vigil webhook ...`
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Deliver posts until stopped (SIGINT/SIGTERM), for deployments that run
    /// delivery apart from the gateway; several may share one PostgreSQL database
    Run,
    /// A local receiver for trying webhooks out: prints each post it gets as
    /// one JSON line, with whether its signature verifies when --secret is given
    Receive {
        /// Address to listen on
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8088")]
        listen: std::net::SocketAddr,
        /// The endpoint's signing secret (whsec_...); posts that do not verify
        /// are answered 401
        #[arg(long, value_name = "WHSEC")]
        secret: Option<String>,
    },
    /// List posts and their attempts, newest first
    Deliveries {
        /// Only this endpoint's
        #[arg(long, value_name = "ID")]
        endpoint: Option<String>,
        /// Only posts in this state
        #[arg(long, value_enum)]
        status: Option<DeliveryStatus>,
        /// Only posts made at or after T (RFC 3339 or YYYY-MM-DD)
        #[arg(long, value_name = "T", value_parser = audit_db::time_us::parse)]
        since: Option<i64>,
        /// At most this many posts
        #[arg(long, default_value = "100")]
        limit: u32,
        /// One JSON object per line, with its attempts
        #[arg(long)]
        json: bool,
    },
    /// Send posts again with their original ids and bodies
    Replay {
        /// This one post
        #[arg(
            long,
            value_name = "ID",
            required_unless_present = "endpoint",
            conflicts_with = "endpoint"
        )]
        delivery: Option<String>,
        /// Every post to this endpoint made since --since
        #[arg(long, value_name = "ID", requires = "since")]
        endpoint: Option<String>,
        /// Made at or after T (RFC 3339 or YYYY-MM-DD)
        #[arg(long, value_name = "T", value_parser = audit_db::time_us::parse)]
        since: Option<i64>,
        /// Made before T
        #[arg(long, value_name = "T", value_parser = audit_db::time_us::parse)]
        until: Option<i64>,
    },
}

/// A post's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeliveryStatus {
    /// Not delivered yet; another attempt will be made.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Every attempt failed, or the endpoint is gone.
    Failed,
}

impl DeliveryStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

/// Where a password comes from: never the command line.
#[derive(Debug, Args)]
pub struct PasswordSource {
    /// Read the password from this file (first line) instead of stdin
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

/// `vigil admin user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a technician account (password from stdin or --password-file)
    Add {
        email: String,
        #[arg(long)]
        group: String,
        #[arg(long, default_value = "technician", value_parser = parse_role)]
        role: audit_db::accounts::Role,
        /// The password must be changed at the first login
        #[arg(long)]
        must_change: bool,
        #[command(flatten)]
        password: PasswordSource,
        #[command(flatten)]
        by: AsAdmin,
    },
    /// Set an account's password (from stdin or --password-file)
    Passwd {
        email: String,
        /// The password must be changed at the next login
        #[arg(long)]
        must_change: bool,
        #[command(flatten)]
        password: PasswordSource,
        #[command(flatten)]
        by: AsAdmin,
    },
    /// Unlock an account locked after failed logins
    Unlock {
        email: String,
        #[command(flatten)]
        by: AsAdmin,
    },
    /// Disable an account (it can no longer log in)
    Disable {
        email: String,
        #[command(flatten)]
        by: AsAdmin,
    },
    /// Enable a disabled account
    Enable {
        email: String,
        #[command(flatten)]
        by: AsAdmin,
    },
    /// Move an account to another group or role
    Move {
        email: String,
        #[arg(long)]
        group: String,
        #[arg(long, default_value = "technician", value_parser = parse_role)]
        role: audit_db::accounts::Role,
        #[command(flatten)]
        by: AsAdmin,
    },
    /// List accounts
    List {
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
}

/// `vigil admin retention ...`
#[derive(Debug, Subcommand)]
pub enum RetentionAdminCommand {
    /// Print the retention policy
    Show {
        /// As JSON
        #[arg(long)]
        json: bool,
    },
    /// Change the policy: the default, or one group's (only what is given)
    Set(RetentionSettings),
}

/// `vigil admin retention set` options. Periods are like 2y, 18m, 90d or
/// 1y6m; each class takes ONLINE+ARCHIVED, e.g. 2y+2y.
#[derive(Debug, Args)]
pub struct RetentionSettings {
    /// Change this technician group's policy (made from the default if it has
    /// none) instead of the default
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Start from a preset: default (2y+2y) or hipaa (6y+0)
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// Every class
    #[arg(long, value_name = "ONLINE+ARCHIVED", allow_hyphen_values = true)]
    pub all: Option<String>,
    /// Session events, chat included
    #[arg(long, value_name = "ONLINE+ARCHIVED", allow_hyphen_values = true)]
    pub session_events: Option<String>,
    /// Session recordings (.vrec files)
    #[arg(long, value_name = "ONLINE+ARCHIVED", allow_hyphen_values = true)]
    pub recordings: Option<String>,
    /// Logins, lockouts, administrative changes (at least a year in all)
    #[arg(long, value_name = "ONLINE+ARCHIVED", allow_hyphen_values = true)]
    pub security_events: Option<String>,
    /// Webhook delivery outcomes
    #[arg(long, value_name = "ONLINE+ARCHIVED", allow_hyphen_values = true)]
    pub webhook_deliveries: Option<String>,
    /// Drop the group's own policy: it follows the default again
    #[arg(long, conflicts_with_all = ["preset", "all", "session_events", "recordings", "security_events", "webhook_deliveries"])]
    pub inherit: bool,
    #[command(flatten)]
    pub by: AsAdmin,
}

/// `vigil admin hold ...`
#[derive(Debug, Subcommand)]
pub enum HoldCommand {
    /// Place a legal hold on a session, a technician's sessions, or a time range
    Add {
        /// One session (GUID)
        #[arg(long, value_name = "GUID", conflicts_with_all = ["technician", "since"])]
        session: Option<uuid::Uuid>,
        /// Every session of this technician, and what they did
        #[arg(long, value_name = "EMAIL", conflicts_with = "since")]
        technician: Option<String>,
        /// Everything that happened from T (with --until)
        #[arg(long, value_name = "T", value_parser = audit_db::time_us::parse)]
        since: Option<i64>,
        /// ... until T
        #[arg(long, value_name = "T", value_parser = audit_db::time_us::parse)]
        until: Option<i64>,
        /// Why (e.g. the matter's reference)
        #[arg(long, value_name = "TEXT")]
        reason: String,
        #[command(flatten)]
        by: AsAdmin,
    },
    /// List the holds in force
    List {
        /// Released ones too
        #[arg(long)]
        all: bool,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Release a hold: what it kept is then kept only as policy says
    Release {
        /// The hold's id
        id: i64,
        /// Why
        #[arg(long, value_name = "TEXT")]
        reason: String,
        #[command(flatten)]
        by: AsAdmin,
    },
}

/// The administrator a change is recorded under.
#[derive(Debug, Args)]
pub struct AsAdmin {
    /// The administrator to record [default: the local user@host]
    #[arg(long = "as", value_name = "NAME")]
    pub admin: Option<String>,
}

/// Group settings given on the command line.
#[derive(Debug, Args)]
pub struct GroupSettings {
    /// Permissions, comma-separated (or "none"); one of: remote_control, desktop_view,
    /// send_files, receive_files, file_manager, send_urls, system_information, reboot,
    /// record_sessions, private_sessions, request_credentials, clipboard_sync, deploy_scripts
    #[arg(long, value_name = "LIST", value_parser = parse_permissions)]
    pub permissions: Option<PermissionList>,
    /// Networks members may connect from, comma-separated CIDRs ("any" for anywhere)
    #[arg(long = "allow-ip", value_name = "LIST", value_parser = parse_networks)]
    pub allow_ip: Option<NetworkList>,
    /// One consent prompt per session instead of one per action
    #[arg(long, value_name = "BOOL")]
    pub single_prompt: Option<bool>,
    /// Record every session of the group
    #[arg(long, value_name = "BOOL")]
    pub force_recording: Option<bool>,
    /// Keep chat text in the audit log (otherwise only its length)
    #[arg(long, value_name = "BOOL")]
    pub store_chat: Option<bool>,
}

/// A parsed `--permissions` value.
#[derive(Debug, Clone)]
pub struct PermissionList(pub Vec<audit_db::Permission>);

/// A parsed `--allow-ip` value.
#[derive(Debug, Clone)]
pub struct NetworkList(pub Vec<String>);

/// `vigil admin group ...`
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Add a technician group
    Add {
        name: String,
        #[command(flatten)]
        settings: GroupSettings,
        #[command(flatten)]
        by: AsAdmin,
    },
    /// Change a group's settings (only those given)
    Set {
        name: String,
        #[command(flatten)]
        settings: GroupSettings,
        #[command(flatten)]
        by: AsAdmin,
    },
    /// List groups
    List {
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
}

/// `vigil admin policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the access policy as JSON
    Show,
    /// Change the access policy (only what is given); gateways apply it when they start
    Set(PolicySettings),
}

/// `vigil admin policy set` options. Each value has a range (checked before
/// anything is stored; `vigil admin policy show` prints the result).
#[derive(Debug, Args)]
pub struct PolicySettings {
    /// Shortest password accepted (8 to 256 characters)
    #[arg(long, value_name = "N")]
    pub min_password_length: Option<usize>,
    /// Days after which a password must be changed (1 to 3650), or "never"
    #[arg(long, value_name = "DAYS|never", value_parser = parse_days)]
    pub password_max_age: Option<OrNever<u32>>,
    /// Consecutive failed logins that lock an account (1 to 100)
    #[arg(long, value_name = "N")]
    pub lockout_threshold: Option<u32>,
    /// How long a lock lasts (e.g. 30m; up to a year), or "never" (until an admin unlocks it)
    #[arg(long, value_name = "DURATION|never", value_parser = parse_optional_duration)]
    pub lockout: Option<OrNever<std::time::Duration>>,
    /// Failed logins from one address, across accounts, before it is throttled (1 to 100000)
    #[arg(long, value_name = "N")]
    pub ip_failure_limit: Option<u32>,
    /// The window of --ip-failure-limit (e.g. 15m; 1 s to 7 days)
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub ip_window: Option<std::time::Duration>,
    /// Idle time after which a technician is logged off (e.g. 15m; 1 s to 1 day)
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub idle_timeout: Option<std::time::Duration>,
    /// How long a session PIN stays valid (e.g. 10m; 1 s to 1 day)
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub pin_ttl: Option<std::time::Duration>,
    /// Wrong PINs from one address, within --pin-window, before it is throttled (1 to 1000)
    #[arg(long, value_name = "N")]
    pub pin_failure_limit: Option<u32>,
    /// The window of --pin-failure-limit and --pin-gateway-limit (e.g. 10m; 1 s to 1 day)
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub pin_window: Option<std::time::Duration>,
    /// Wrong PINs, from any address, after which a session's PIN is withdrawn (1 to 99)
    #[arg(long, value_name = "N")]
    pub pin_guess_budget: Option<u32>,
    /// Wrong PINs from all addresses within --pin-window after which PIN joins
    /// pause and an alarm is audited (1 to 1000000)
    #[arg(long, value_name = "N")]
    pub pin_gateway_limit: Option<u32>,
    #[command(flatten)]
    pub by: AsAdmin,
}

/// A value, or "never".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrNever<T>(pub Option<T>);

fn parse_role(text: &str) -> Result<audit_db::accounts::Role, String> {
    text.parse()
}

fn parse_permissions(text: &str) -> Result<PermissionList, String> {
    if text.trim() == "none" {
        return Ok(PermissionList(Vec::new()));
    }
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse().map_err(|e: audit_db::event::UnknownPermission| {
                format!("unknown permission {:?}", e.0)
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(PermissionList)
}

fn parse_networks(text: &str) -> Result<NetworkList, String> {
    if text.trim() == "any" {
        return Ok(NetworkList(Vec::new()));
    }
    Ok(NetworkList(
        text.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect(),
    ))
}

fn parse_days(text: &str) -> Result<OrNever<u32>, String> {
    if text == "never" {
        return Ok(OrNever(None));
    }
    text.parse()
        .map(|d| OrNever(Some(d)))
        .map_err(|_| format!("{text:?} is not a number of days or \"never\""))
}

fn parse_optional_duration(text: &str) -> Result<OrNever<std::time::Duration>, String> {
    if text == "never" {
        return Ok(OrNever(None));
    }
    humantime::parse_duration(text)
        .map(|d| OrNever(Some(d)))
        .map_err(|e| e.to_string())
}

/// A duration within `min..=max`, for options whose extremes would break
/// something (a timer that overflows, a deadline nobody can meet).
fn duration_within(
    text: &str,
    min: std::time::Duration,
    max: std::time::Duration,
) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d < min || d > max {
        return Err(format!(
            "{text} is out of range: {} to {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        ));
    }
    Ok(d)
}

fn parse_grace(text: &str) -> Result<std::time::Duration, String> {
    duration_within(
        text,
        std::time::Duration::ZERO,
        std::time::Duration::from_secs(30 * 86400),
    )
}

fn parse_handshake_timeout(text: &str) -> Result<std::time::Duration, String> {
    duration_within(
        text,
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(300),
    )
}

fn parse_retention_every(text: &str) -> Result<OrNever<std::time::Duration>, String> {
    if text.trim() == "never" {
        return Ok(OrNever(None));
    }
    duration_within(
        text,
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(7 * 24 * 3600),
    )
    .map(|d| OrNever(Some(d)))
}

fn parse_checkpoint_every(text: &str) -> Result<std::time::Duration, String> {
    duration_within(
        text,
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(24 * 3600),
    )
}

fn parse_drain_timeout(text: &str) -> Result<std::time::Duration, String> {
    duration_within(
        text,
        std::time::Duration::ZERO,
        std::time::Duration::from_secs(3600),
    )
}

fn parse_anchor(text: &str) -> Result<audit_db::Anchor, String> {
    let (seq, hash) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not SEQ:HASH"))?;
    Ok(audit_db::Anchor {
        seq: seq
            .parse()
            .map_err(|_| format!("{seq:?} is not a sequence number"))?,
        hash: audit_db::Hash::from_hex(hash)
            .ok_or_else(|| format!("{hash:?} is not 64 hex digits"))?,
    })
}

fn parse_type(text: &str) -> Result<String, String> {
    if audit_db::EventKind::TYPE_NAMES.contains(&text) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "unknown event type {text:?}; one of: {}",
            audit_db::EventKind::TYPE_NAMES.join(", ")
        ))
    }
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{text:?} is not WIDTHxHEIGHT, e.g. 1920x1080");
    let (w, h) = text.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    if !(1..=16384).contains(&w) || !(1..=16384).contains(&h) {
        return Err(format!("{text}: width and height must be 1 to 16384"));
    }
    if w as usize * h as usize > recorder::codec::MAX_PIXELS {
        return Err(format!(
            "{text}: at most {} pixels",
            recorder::codec::MAX_PIXELS
        ));
    }
    Ok((w, h))
}

fn parse_scale(text: &str) -> Result<(u32, u32), String> {
    parse_size(&text.replace(':', "x")).map_err(|_| format!("{text:?} is not W:H, e.g. 1280:720"))
}

fn parse_fps(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(fps) if fps > 0.0 && fps <= 240.0 => Ok(fps),
        _ => Err(format!("{text:?} is not a frame rate between 0 and 240")),
    }
}

/// `[[HH:]MM:]SS[.mmm]` as microseconds.
pub fn parse_clock(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a time like 01:02:03.450, 02:03 or 3.5");
    let mut parts: Vec<&str> = text.split(':').collect();
    if parts.len() > 3 {
        return Err(bad());
    }
    let seconds: f64 = parts.pop().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    if !(0.0..60.0).contains(&seconds) && !parts.is_empty() || seconds < 0.0 || !seconds.is_finite()
    {
        return Err(bad());
    }
    let mut total_us = (seconds * 1_000_000.0).round() as u64;
    for (unit, part) in [60u64, 3600].into_iter().zip(parts.iter().rev()) {
        let n: u64 = part.parse().map_err(|_| bad())?;
        total_us += n * unit * 1_000_000;
    }
    Ok(total_us)
}

/// Microseconds as `HH:MM:SS.mmm`.
pub fn format_clock(us: u64) -> String {
    let ms = us / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_options_are_hidden_and_refused_where_they_mean_nothing() {
        let help = |words: &str| {
            let mut command = Cli::command_line();
            command.build();
            let mut at = &mut command;
            for word in words.split(' ') {
                at = at.find_subcommand_mut(word).unwrap();
            }
            at.render_long_help().to_string()
        };
        for path in KEEPS_NO_DATA {
            assert!(!help(path).contains("--db"), "{path}");
            let mut argv = vec!["vigil"];
            argv.extend(path.split(' '));
            argv.push("--help");
            let Err(e) = Cli::from_argv(&argv) else {
                panic!("{path}: --help parsed");
            };
            assert!(!e.to_string().contains("--data"), "{path}");
        }
        for path in [
            "gateway",
            "retention restore",
            "recording verify",
            "audit query",
        ] {
            assert!(help(path).contains("--db"), "{path}");
        }
        let cli =
            Cli::from_argv(["vigil", "retention", "verify", "x", "--db", "sqlite://x"]).unwrap();
        assert_eq!(cli.keeps_no_data(), Some("retention verify"));
        let cli =
            Cli::from_argv(["vigil", "retention", "restore", "x", "--db", "sqlite://x"]).unwrap();
        assert_eq!(cli.keeps_no_data(), None);
    }

    #[test]
    fn clock_times_parse_and_print() {
        assert_eq!(parse_clock("01:02:03.450"), Ok(3_723_450_000));
        assert_eq!(parse_clock("02:03"), Ok(123_000_000));
        assert_eq!(parse_clock("3.5"), Ok(3_500_000));
        for bad in ["", "1:2:3:4", "00:75", "x", "-1", "1:-2"] {
            assert!(parse_clock(bad).is_err(), "{bad}");
        }
        assert_eq!(format_clock(3_723_450_000), "01:02:03.450");
    }

    /// A value for an option or argument, from its value name.
    fn sample(arg: &clap::Arg) -> Vec<String> {
        let name = arg
            .get_value_names()
            .and_then(|n| n.first())
            .map(|n| n.as_str().to_owned())
            .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
        let values: &[&str] = match name.as_str() {
            "N" => &["12"],
            "DURATION" => &["10m"],
            "DURATION|never" => &["10m", "never"],
            "DAYS|never" => &["90", "never"],
            "BOOL" => &["true", "false"],
            "LIST" if arg.get_id() == "permissions" => &["desktop_view,send_files", "none"],
            "LIST" => &["10.0.0.0/8", "any"],
            "FILE" => &["/dev/null"],
            "ROLE" => &["admin"],
            "GUID" => &["6a0f2a5c-0000-4000-8000-000000000000"],
            _ if arg.get_id() == "id" => &["3"],
            "T" => &["2024-01-01"],
            "ONLINE+ARCHIVED" => &["2y+2y"],
            "DIR" => &["/tmp"],
            "NAME" if arg.get_id() == "preset" => &["hipaa"],
            "TEXT" if !arg.is_positional() => &["matter 7"],
            _ if arg.get_id() == "role" => &["admin"],
            _ => &["someone@example.com"],
        };
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    /// Every flag of every `vigil admin` command parses into the typed
    /// `Cli` (clap checks each field's type only when it is read: a
    /// mismatch is a panic at run time, which this would catch).
    #[test]
    fn every_admin_flag_parses() {
        use clap::CommandFactory;
        let cli = Cli::command();
        cli.clone().debug_assert();
        let admin = cli.find_subcommand("admin").unwrap();
        let mut leaves = Vec::new();
        for group in admin.get_subcommands() {
            let subs: Vec<_> = group.get_subcommands().collect();
            if subs.is_empty() {
                leaves.push((vec![group.get_name().to_owned()], group));
            }
            for leaf in subs {
                leaves.push((
                    vec![group.get_name().to_owned(), leaf.get_name().to_owned()],
                    leaf,
                ));
            }
        }
        let mut tried = 0;
        for (path, leaf) in leaves {
            let mut base = vec!["vigil".to_owned(), "admin".to_owned()];
            base.extend(path);
            for positional in leaf.get_positionals() {
                base.push(sample(positional)[0].clone());
            }
            for required in leaf
                .get_arguments()
                .filter(|a| !a.is_positional() && a.is_required_set())
            {
                base.push(format!("--{}", required.get_long().unwrap()));
                base.push(sample(required)[0].clone());
            }
            let options: Vec<_> = leaf
                .get_arguments()
                .filter(|a| !a.is_positional() && !a.is_global_set() && !a.is_required_set())
                .filter(|a| a.get_long().is_some_and(|l| l != "help" && l != "version"))
                .collect();
            for option in options {
                let long = format!("--{}", option.get_long().unwrap());
                let takes_value = option.get_num_args().is_none_or(|n| n.takes_values());
                let values = if takes_value && !matches!(option.get_action(), ArgAction::SetTrue) {
                    sample(option).into_iter().map(Some).collect()
                } else {
                    vec![None]
                };
                for value in values {
                    let mut argv = base.clone();
                    argv.push(long.clone());
                    argv.extend(value.clone());
                    // `note` needs its text or --stdin, not both.
                    if long == "--stdin" {
                        argv.retain(|a| a != "someone@example.com");
                    }
                    let parsed = Cli::from_argv(&argv);
                    assert!(parsed.is_ok(), "{argv:?}: {}", parsed.unwrap_err());
                    tried += 1;
                }
            }
        }
        assert!(tried > 30, "only {tried} flags tried");
    }

    #[test]
    fn sizes_and_rates_are_checked() {
        assert_eq!(parse_size("1920x1080"), Ok((1920, 1080)));
        assert!(parse_size("1920").is_err() && parse_size("0x5").is_err());
        assert!(parse_fps("0").is_err() && parse_fps("nan").is_err() && parse_fps("10").is_ok());
    }
}
