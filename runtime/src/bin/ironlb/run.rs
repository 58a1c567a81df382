//! `ironlb run`: the daemon (or one sync with `--once`), its logs and progress bar.

use super::{bad, op_err, RunArgs};
use anyhow::{bail, Context, Result};
use ironlb_runtime::cli::ColorChoice;
use ironlb_runtime::config::{LogFormat, RunSettings};
use ironlb_runtime::daemon::Daemon;
use ironlb_runtime::ops::{self, Format, View};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub(super) fn init_logs(format: LogFormat, color: ColorChoice) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(color.use_ansi(std::io::stderr().is_terminal(), no_color))
        .with_writer(std::io::stderr);
    if format == LogFormat::Json {
        b.json().init();
    } else {
        b.init();
    }
}

fn progress_bar() -> Option<ironlb_runtime::reconcile::ProgressFn> {
    use std::io::IsTerminal as _;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::hidden();
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} programming {pos}/{len} load balancers {wide_bar} {eta}",
        )
        .expect("progress template"),
    );
    Some(Box::new(move |done, total| {
        if total < 64 {
            return;
        }
        if bar.is_hidden() && done < total {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
        bar.set_length(total);
        bar.set_position(done);
        if done == total {
            bar.finish_and_clear();
            bar.reset();
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
    }))
}

pub(super) fn run_daemon(args: RunArgs) -> Result<()> {
    let RunArgs {
        config,
        settings: flags,
        print_config,
        once,
        remove_unclaimed,
    } = args;
    flags.check("--").map_err(bad)?;
    let file = match &config {
        Some(path) => RunSettings::load(path).map_err(bad)?,
        None => RunSettings::default(),
    };
    let settings = file.overlay(flags).with_defaults();
    if print_config {
        out!("{}", settings.to_toml().trim_end());
        return Ok(());
    }
    let cfg = settings.daemon_config(remove_unclaimed).map_err(bad)?;
    init_logs(
        settings.log_format.unwrap_or(LogFormat::Text),
        settings.color.unwrap_or_default(),
    );
    if !cfg.manifests.is_dir() {
        bail!(bad(format!(
            "--manifests {}: not a directory",
            cfg.manifests.display()
        )));
    }
    let mut d = Daemon::start(cfg).context("starting the daemon")?;
    d.set_progress(progress_bar());
    if once {
        let report = d.sync()?;
        let shared = d.shared();
        let mut sh = shared.lock().expect("daemon state lock");
        out!("{}", ops::status(sh.rec.status(), Format::Table).trim_end());
        // The same files and the same rules as `validate`: every load and validation error, and exit 2.
        let load_errors = sh.rec.load_errors();
        let invalid = sh.rec.validation_errors();
        for e in &load_errors {
            out!("error: {e}");
        }
        for e in &invalid {
            out!("error: {e}");
        }
        let names = sh.names();
        let model = sh.model.clone();
        let view = View {
            dev: sh.rec.device(),
            model: model.as_ref(),
            names: &names,
            copy: false,
        };
        let stats = ops::stats(view, Format::Table).map_err(op_err)?;
        if let Some(tables) = stats.split("tables:\n").nth(1) {
            out!("\ndevice tables:\n{}", tables.trim_end());
        }
        out!(
            "\nsynced in {:.1} ms: {} created, {} updated, {} removed, {} unchanged, {} errors",
            report.duration.as_secs_f64() * 1e3,
            report.created,
            report.updated,
            report.removed,
            report.unchanged,
            report.errors.len()
        );
        let bad_input = load_errors.len() + invalid.len();
        if bad_input > 0 {
            bail!(bad(format!(
                "{bad_input} manifest errors ({} load balancers not programmed as desired)",
                report.errors.len()
            )));
        }
        if report.errors.iter().any(|e| e.reason.is_bad_input()) {
            bail!(bad(format!(
                "{} load balancers not programmed",
                report.errors.len()
            )));
        }
        if !report.errors.is_empty() {
            bail!("{} load balancers not programmed", report.errors.len());
        }
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
        .context("installing signal handlers")?;
    d.set_reload_flag(reload);
    d.run(&stop)?;
    Ok(())
}
