//! The `imagegram` command: serve, worker, render, migrate.

use std::io::Write;

use anyhow::Context;
use imagegram::config::{
    AdminAction, AdminArgs, Command, LogFormat, MigrateArgs, RenderArgs, Settings, instance,
};
use imagegram::domain::PostFilter;
use imagegram::migrate::{Instance, Options};
use imagegram::{app, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    return_large_allocations_to_the_system();
    let cli = imagegram::config::parse_cli();
    match cli.command {
        Command::Serve(args) => {
            let config = args.resolve()?;
            telemetry::init(config.log_format);
            let running = app::serve(config).await?;
            let addr = running.addr.expect("servers listen");
            // One plain line on stdout, so scripts and tests can find the port.
            println!("imagegram listening on http://{addr}");
            std::io::stdout().flush()?;
            tracing::info!(%addr, "listening");
            wait_for_signal(running).await
        }
        Command::Worker(args) => {
            let config = args.resolve()?;
            telemetry::init(config.log_format);
            let running = app::work(config).await?;
            println!("imagegram worker started");
            std::io::stdout().flush()?;
            wait_for_signal(running).await
        }
        Command::Render(args) => render(args),
        Command::Migrate(args) => migrate(args).await,
        Command::Admin(args) => admin(args).await,
    }
}

async fn admin(args: AdminArgs) -> anyhow::Result<()> {
    let config = args.instance.resolve()?;
    let services = app::services(&config).await?;
    let refused = |e: imagegram::service::ServiceError| match e {
        imagegram::service::ServiceError::Validation(errors) => anyhow::anyhow!(
            "{}",
            errors
                .0
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        other => anyhow::anyhow!("{other}"),
    };
    match args.action {
        AdminAction::SetRole { username, role } => {
            let user = services
                .set_role(&imagegram::service::Actor::Operator, &username, &role)
                .await
                .map_err(refused)?;
            println!("{} is now {role}", user.username.as_str());
        }
        AdminAction::ResetPassword { username } => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the new password from standard input")?;
            let password = line.trim_end_matches(['\r', '\n']).to_owned();
            let user = services
                .reset_password(&username, password)
                .await
                .map_err(refused)?;
            println!(
                "{}: password reset; every session of the account is revoked",
                user.username.as_str()
            );
        }
    }
    Ok(())
}

async fn wait_for_signal(running: app::Running) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

fn render(args: RenderArgs) -> anyhow::Result<()> {
    let filter = PostFilter::parse(Some(&args.filter), args.dither_levels)
        .map_err(|(field, message)| anyhow::anyhow!("--{}: {message}", field.replace('_', "-")))?;
    let filter = match filter {
        PostFilter::None => imaging::Filter::None,
        PostFilter::Grayscale => imaging::Filter::Grayscale,
        PostFilter::Dither { levels } => imaging::Filter::Dither { levels },
    };
    let defaults = Settings::default();
    let limits = imaging::Limits {
        max_pixels: args.max_pixels.unwrap_or(defaults.max_pixels),
        max_side: args.max_side.unwrap_or(defaults.max_side),
    };
    let rendered = imaging::render(&args.input, &limits, filter)
        .with_context(|| format!("rendering {}", args.input.display()))?;
    std::fs::write(&args.output, &rendered.jpeg)
        .with_context(|| format!("writing {}", args.output.display()))?;
    Ok(())
}

async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    telemetry::init(LogFormat::Text);
    let (database, blobs) = instance(
        args.from.as_deref(),
        args.from_database_url.as_deref(),
        args.from_blob_url.as_deref(),
        "from",
    )?;
    let from = Instance { database, blobs };
    let (database, blobs) = instance(
        args.to.as_deref(),
        args.to_database_url.as_deref(),
        args.to_blob_url.as_deref(),
        "to",
    )?;
    let to = Instance { database, blobs };
    if let (imagegram::config::DatabaseUrl::Sqlite(a), imagegram::config::DatabaseUrl::Sqlite(b)) =
        (&from.database, &to.database)
        && a == b
    {
        anyhow::bail!("the source and the target are the same database");
    }
    imagegram::migrate::run(
        from,
        to,
        Options {
            batch_size: args.batch_size.max(1),
            stop_after_rows: args.stop_after_rows,
        },
    )
    .await
}

/// glibc's malloc raises its mmap threshold each time a large block is freed,
/// after which blocks of that size come from per-thread arenas and stay with
/// the process: every Argon2 hash (19 MiB) and image buffer then leaves its
/// memory behind, and a node's RSS settled near 230 MiB after a dozen sign-ups
/// (measured with `examples/hostile.rs`). A fixed threshold keeps blocks of
/// 1 MiB and more in mmap, so they go back to the system when freed; the cost
/// is page faults on those few, large allocations.
fn return_large_allocations_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets one allocator parameter under glibc's own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
