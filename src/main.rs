//! The `gatehouse` command: `serve` (the default), `migrate` and `schema`.

use clap::{Parser, Subcommand};
use gatehouse::{app, graphql, Config};
use tokio::net::TcpListener;

// A request allocates many small, short-lived objects across threads (the GraphQL document,
// resolver futures, rows); mimalloc does that with far less contention than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "gatehouse", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations and serve (the default).
    Serve(Config),
    /// Apply pending migrations and exit.
    Migrate(Config),
    /// Print the GraphQL SDL.
    Schema,
}

#[tokio::main]
async fn main() {
    let cli = Cli::try_parse().unwrap_or_else(|e| match e.use_stderr() {
        // Bad flags: one line, not clap's usage block.
        true => fail(
            2,
            e.to_string()
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: "),
        ),
        false => e.exit(),
    });
    // Log lines are written by a thread of their own, every few milliseconds, so a request
    // never waits on stdout (`log_writer`); the guard writes the last ones before `main` ends.
    let (log_writer, flush_on_exit) = gatehouse::log_writer::batched(std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_writer(log_writer)
        .fmt_fields(gatehouse::log_format::LineFields::default())
        .event_format(gatehouse::log_format::LineFormat::default())
        .init();
    let result = match cli.command.unwrap_or(Command::Serve(cli.config)) {
        Command::Schema => {
            print!("{}", graphql::sdl());
            Ok(())
        }
        Command::Migrate(config) => migrate(config).await,
        Command::Serve(config) => serve(config).await,
    };
    // `exit` runs no destructors: the last lines are written first.
    drop(flush_on_exit);
    if let Err(e) = result {
        fail(1, &format!("{e:#}"));
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    config.validate().unwrap_or_else(|e| fail(2, &e));
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|e| anyhow::anyhow!("binding {}: {e}", config.bind))?;
    let mut state = gatehouse::startup::start(config).await?;
    state.metrics = Some(gatehouse::telemetry::install()?);
    tracing::info!(address = %listener.local_addr()?, "gatehouse listening; GraphiQL at /graphql");
    Ok(app::serve(listener, state, gatehouse::app::shutdown_signal()).await?)
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    config.validate().unwrap_or_else(|e| fail(2, &e));
    gatehouse::startup::start(config).await?;
    tracing::info!("migrations applied");
    Ok(())
}

fn fail(code: i32, message: &str) -> ! {
    eprintln!("gatehouse: {message}");
    std::process::exit(code)
}
