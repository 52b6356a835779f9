//! `softswitch guest test FILE.wasm CASES.toml`: runs a guest against
//! written cases and checks its answers, without a running switch, a
//! database or a network ([`softswitch::plugins::cases`]).

use std::path::PathBuf;

use anyhow::{Context, bail};
use softswitch::metrics::Metrics;
use softswitch::plugins::cases::{self, CaseFile, CaseWorld, Checked};
use softswitch::plugins::inspect;
use softswitch::plugins::{Plugins, PluginsOptions};

#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// The component to test.
    file: PathBuf,
    /// The cases (TOML; see the README, "Plugins").
    cases: PathBuf,
    /// IVR guests: the prompts folder (one folder per language), instead of
    /// the case file's `[ivr] prompts` or `./prompts`.
    #[arg(long, value_name = "DIR")]
    prompts: Option<PathBuf>,
}

/// Runs the cases; prints one line per case and a summary. Fails when a
/// case does (or the files cannot be used).
pub async fn run(args: &TestArgs) -> anyhow::Result<()> {
    let mut file = CaseFile::load(&args.cases)?;
    if let Some(dir) = &args.prompts {
        file.use_prompts(dir);
    }
    // The switch's default limits ([plugins] memory_limit_mib, deadline_ms).
    let plugins = Plugins::new(
        PluginsOptions {
            cache_dir: std::env::temp_dir().join("softswitch-guest-test-cache"),
            memory_limit_bytes: 64 << 20,
            deadline: std::time::Duration::from_millis(50),
            provider_deadline: std::time::Duration::from_secs(1),
            warm_instances: 1,
            // One case at a time: a few slots are plenty, and reserve
            // little address space.
            max_instances: 16,
            instance_wait: std::time::Duration::from_secs(1),
        },
        Metrics::new(),
    )?;
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let component = plugins.compile(&args.file, &bytes)?;
    let exports = inspect::export_names(&plugins, &component);
    let world = if exports.iter().any(|e| e == "route") {
        // The switch's own check first: it links and makes the smoke call.
        let report = inspect::check(&plugins, &args.file).await?;
        println!("{}: {}", args.file.display(), report.world);
        if !file.has_routing() {
            bail!(
                "{} has no [[cases]] (routing questions)",
                args.cases.display()
            );
        }
        CaseWorld::Routing
    } else if exports.iter().any(|e| e == "build-send") {
        // Names the WIT version the guest targets (0.1.0 guests are served
        // through the shim).
        let report = inspect::check(&plugins, &args.file).await?;
        println!("{}: {}", args.file.display(), report.world);
        if !file.has_sms() {
            bail!(
                "{} has no [[sends]], [[responses]] or [[reports]]",
                args.cases.display()
            );
        }
        CaseWorld::Sms
    } else if exports.iter().any(|e| e == "parse-response") {
        if !file.has_push() {
            bail!(
                "{} has no [[pushes]] or [[push_responses]]",
                args.cases.display()
            );
        }
        CaseWorld::Push
    } else if exports.iter().any(|e| e == "run") {
        if !file.has_ivr() {
            bail!("{} has no [[calls]]", args.cases.display());
        }
        CaseWorld::Ivr
    } else {
        bail!(
            "{} exports [{}]: `guest test` runs routing, SMS provider, push provider and IVR guests",
            args.file.display(),
            exports.join(", ")
        );
    };
    let name = cases::guest_name(&args.file);
    let results =
        cases::run_component(world, &plugins, &name, &args.file, &component, &file).await?;
    let mut failed = 0;
    for Checked { name, got, failure } in &results {
        match failure {
            None => println!("ok    {name}: {got}"),
            Some(why) => {
                failed += 1;
                println!("FAIL  {name}: {why}");
            }
        }
    }
    let total = results.len();
    println!("{total} cases, {} passed, {failed} failed", total - failed);
    if failed > 0 {
        bail!("{failed} of {total} cases failed");
    }
    Ok(())
}
