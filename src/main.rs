use std::io::Write;

use anyhow::Context;
use clap::Parser;
use imagegram::config::{Cli, Command, RenderArgs};
use imagegram::domain::PostFilter;
use imagegram::{app, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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
    }
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
    let limits = imaging::Limits {
        max_pixels: args.max_pixels,
        max_side: args.max_side,
    };
    let rendered = imaging::render(&args.input, &limits, filter)
        .with_context(|| format!("rendering {}", args.input.display()))?;
    std::fs::write(&args.output, &rendered.jpeg)
        .with_context(|| format!("writing {}", args.output.display()))?;
    Ok(())
}
