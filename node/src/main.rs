//! `palisade-node run --config FILE`: one Palisade validator.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use palisade_node::NodeConfig;
use tracing_subscriber::EnvFilter;

/// jemalloc instead of glibc's malloc: under a write load glibc's allocator
/// took about a quarter of a node's CPU samples (arena consolidation, chunk
/// unlinking), jemalloc about 4 %; mimalloc left 13 % (with the kernel
/// zeroing the pages it returned). BENCHMARKS.md, "Write path (issue 15),
/// fourth wave".
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "palisade-node",
    version,
    about = "A Palisade registry validator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node until SIGINT or SIGTERM.
    Run {
        /// The node's TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Generate this node's validator key file (mode 0600, never overwritten)
    /// and print its public key, the KEY of `palisade genesis new --validator`.
    Keygen {
        /// Where to write the key file.
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
    },
    /// Resume importing a linked datacenter that froze on evidence of
    /// equivocation (an operator's act, after reading the evidence file).
    /// Run it while the node is stopped.
    UnfreezeLink {
        /// The node's TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
        /// The linked datacenter's name.
        #[arg(long)]
        datacenter: String,
    },
    /// Check a configuration (and its key, genesis and network files) and exit.
    Check {
        /// The node's TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn init_tracing(level: &str) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // Colour only on a terminal: node logs usually go to files.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .init();
}

/// A node that cannot start says why in one line (the whole cause chain),
/// without a backtrace, and exits non-zero.
#[allow(clippy::print_stderr)]
fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the cause chain's text holds.
            let why = format!("{e:#}").replace('\n', " ");
            eprintln!("palisade-node: error: {why}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::UnfreezeLink { config, datacenter } => {
            let config = NodeConfig::load(&config)?;
            let reason = palisade_node::links::unfreeze(&config, &datacenter)?;
            #[allow(clippy::print_stdout)]
            match reason {
                Some(r) => println!("link to {datacenter} unfrozen (was: {r})"),
                None => println!("link to {datacenter} was not frozen"),
            }
        }
        Command::Run { config } => {
            let config = NodeConfig::load(&config)?;
            init_tracing(&config.log_level);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(palisade_node::run(config))?;
        }
        Command::Keygen { out } => {
            let key = palisade_keys::generate_key_file(&out)
                .with_context(|| format!("writing {}", out.display()))?;
            #[allow(clippy::print_stdout)]
            {
                println!("{}", key.public().to_hex());
            }
        }
        Command::Check { config } => {
            let config = NodeConfig::load(&config)?;
            let key = palisade_keys::load_key_file(&config.key_file)?;
            let genesis = palisade_node::load_genesis(&config.genesis_file)?;
            let peers = config.resolve_peers(&key.public())?;
            anyhow::ensure!(
                genesis.validators.index_of(&key.public()).is_some() || config.consensus.learner,
                "key {} is not a genesis validator (a node that joins later sets consensus.learner = true)",
                key.public()
            );
            init_tracing("info");
            tracing::info!(chain = %genesis.chain_id, peers = peers.len(), "configuration is valid");
        }
    }
    Ok(())
}
