//! `softswitch guest new`: a standalone Cargo project for one guest world.
//!
//! Everything the project needs is compiled into the binary (the templates
//! under `host/templates/` and the worlds' WIT from `wit/<world>/<version>/`,
//! the newest version of each), so an installed
//! `softswitch` writes the same project as one run from the repository. The
//! project depends on nothing in this repository: `wit-bindgen` (the version
//! the repository's guests use) and, for the provider worlds, `serde_json`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

/// Arguments of `softswitch guest new`.
#[derive(Args)]
pub struct NewArgs {
    /// Extension point the guest implements.
    #[arg(value_enum)]
    world: World,
    /// Crate name: letters, digits, `-` and `_`, starting with a letter.
    name: String,
    /// Language of the project: Rust for every world, Python for SMS
    /// providers (componentize-py), JavaScript for routing (componentize-js).
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,
    /// Folder to create; default `./<name>`. An existing folder must be empty.
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum World {
    Routing,
    SmsProvider,
    Ivr,
    PushProvider,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum Lang {
    Rust,
    Python,
    Js,
}

/// One template: the world's id and WIT file, and the project's own files.
struct Template {
    world_id: &'static str,
    wit_file: &'static str,
    wit: &'static str,
    cargo_toml: &'static str,
    lib_rs: &'static str,
    readme: &'static str,
    /// Cases for `softswitch guest test`, for the worlds it runs.
    cases: Option<&'static str>,
}

const README_BUILD: &str = include_str!("../templates/README-build.md");
const GITIGNORE: &str = include_str!("../templates/gitignore");

impl World {
    fn template(self) -> Template {
        match self {
            World::Routing => Template {
                world_id: "softswitch:routing/router@0.1.0",
                wit_file: "routing.wit",
                wit: include_str!("../../wit/routing/0.1.0/routing.wit"),
                cargo_toml: include_str!("../templates/routing/Cargo.toml"),
                lib_rs: include_str!("../templates/routing/src/lib.rs"),
                readme: include_str!("../templates/routing/README.md"),
                cases: Some(include_str!("../templates/routing/cases.toml")),
            },
            World::SmsProvider => Template {
                world_id: "softswitch:sms-provider/provider@0.2.0",
                wit_file: "sms-provider.wit",
                wit: include_str!("../../wit/sms-provider/0.2.0/sms-provider.wit"),
                cargo_toml: include_str!("../templates/sms-provider/Cargo.toml"),
                lib_rs: include_str!("../templates/sms-provider/src/lib.rs"),
                readme: include_str!("../templates/sms-provider/README.md"),
                cases: None,
            },
            World::Ivr => Template {
                world_id: "softswitch:ivr/scenario@0.1.0",
                wit_file: "ivr.wit",
                wit: include_str!("../../wit/ivr/0.1.0/ivr.wit"),
                cargo_toml: include_str!("../templates/ivr/Cargo.toml"),
                lib_rs: include_str!("../templates/ivr/src/lib.rs"),
                readme: include_str!("../templates/ivr/README.md"),
                cases: None,
            },
            World::PushProvider => Template {
                world_id: "softswitch:push-provider/provider@0.1.0",
                wit_file: "push-provider.wit",
                wit: include_str!("../../wit/push-provider/0.1.0/push-provider.wit"),
                cargo_toml: include_str!("../templates/push-provider/Cargo.toml"),
                lib_rs: include_str!("../templates/push-provider/src/lib.rs"),
                readme: include_str!("../templates/push-provider/README.md"),
                cases: None,
            },
        }
    }

    /// The folder of `wit/` in the repository holding this world's
    /// versions (`wit/<world>/<version>/`).
    #[cfg(test)]
    fn wit_dir(self) -> &'static str {
        match self {
            World::Routing => "routing",
            World::SmsProvider => "sms-provider",
            World::Ivr => "ivr",
            World::PushProvider => "push-provider",
        }
    }
}

/// Names Cargo refuses for a package, or that clash with the standard crates.
const RESERVED: &[&str] = &[
    "test",
    "core",
    "std",
    "alloc",
    "proc_macro",
    "proc-macro",
    "self",
    "crate",
    "super",
    "build",
    "deps",
    "examples",
    "incremental",
    "wit_bindgen",
    "wit-bindgen",
    "serde_json",
    "serde-json",
];

/// Rust keywords, which cannot name a library crate.
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "dyn", "else", "enum", "extern", "false",
    "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref",
    "return", "static", "struct", "trait", "true", "type", "unsafe", "use", "where", "while",
    "abstract", "become", "box", "do", "final", "gen", "macro", "override", "priv", "try",
    "typeof", "unsized", "virtual", "yield",
];

/// Checks `name` against Cargo's rules for a package name (ASCII only).
pub fn validate_name(name: &str) -> anyhow::Result<()> {
    let Some(first) = name.chars().next() else {
        bail!("the guest name is empty");
    };
    if name.len() > 64 {
        bail!("the guest name {name:?} is longer than 64 characters");
    }
    if !first.is_ascii_alphabetic() {
        bail!("the guest name {name:?} must start with a letter (a-z, A-Z)");
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        bail!(
            "the guest name {name:?} contains {bad:?}: use letters, digits, '-' and '_' (a Cargo crate name)"
        );
    }
    let lib = name.replace('-', "_");
    if RESERVED.contains(&name) || KEYWORDS.contains(&lib.as_str()) {
        bail!("the guest name {name:?} is reserved (a Rust keyword or a standard crate's name)");
    }
    Ok(())
}

/// The files of the project, relative to its folder.
fn files(world: World, name: &str) -> Vec<(PathBuf, String)> {
    let t = world.template();
    let lib = name.replace('-', "_");
    let fill = |text: &str| {
        text.replace("{{build}}", README_BUILD.trim_end())
            .replace("{{world_id}}", t.world_id)
            .replace("{{crate}}", name)
            .replace("{{lib}}", &lib)
    };
    let mut files = vec![
        ("Cargo.toml".into(), fill(t.cargo_toml)),
        ("src/lib.rs".into(), fill(t.lib_rs)),
        ("README.md".into(), fill(t.readme)),
        (".gitignore".into(), GITIGNORE.to_string()),
        (Path::new("wit").join(t.wit_file), t.wit.to_string()),
    ];
    if let Some(cases) = t.cases {
        files.push(("cases.toml".into(), cases.to_string()));
    }
    files
}

/// Refuses a folder that exists and holds anything, or is not a folder.
fn check_target(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} exists and is not empty: choose another --dir",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot use {}", dir.display())),
    }
}

/// The files of a project in another language than Rust: `files` (name,
/// text with placeholders) filled in, the `.gitignore` and the world's WIT.
/// Each language has a template for one world so far (`only`).
fn other_language_files(
    world: World,
    name: &str,
    (lang, only): (&str, World),
    files: &[(&str, &str)],
    gitignore: &str,
) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let t = world.template();
    if world != only {
        bail!(
            "--lang {lang} has a template for {} guests only so far: use --lang rust for {}",
            world_name(only),
            world_name(world)
        );
    }
    let lib = name.replace('-', "_");
    let mut out: Vec<(PathBuf, String)> = files
        .iter()
        .map(|(file, text)| {
            let text = text
                .replace("{{world_id}}", t.world_id)
                .replace("{{crate}}", name)
                .replace("{{lib}}", &lib);
            (PathBuf::from(file), text)
        })
        .collect();
    out.push((".gitignore".into(), gitignore.to_string()));
    out.push((Path::new("wit").join(t.wit_file), t.wit.to_string()));
    Ok(out)
}

/// The files of a Python project (SMS providers only, so far).
fn python_files(world: World, name: &str) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let files = [
        ("app.py", PY_SMS_APP),
        ("README.md", PY_SMS_README),
        ("cases.toml", PY_SMS_CASES),
    ];
    other_language_files(
        world,
        name,
        ("python", World::SmsProvider),
        &files,
        PY_GITIGNORE,
    )
}

/// The files of a JavaScript project (routing only, so far). Its cases are
/// the Rust routing template's: the two routers decide alike.
fn js_files(world: World, name: &str) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let cases = World::Routing.template().cases.unwrap_or_default();
    let files = [
        ("app.js", JS_ROUTING_APP),
        ("package.json", JS_ROUTING_PACKAGE),
        ("README.md", JS_ROUTING_README),
        ("cases.toml", cases),
    ];
    other_language_files(world, name, ("js", World::Routing), &files, JS_GITIGNORE)
}

const JS_ROUTING_APP: &str = include_str!("../templates/js/routing/app.js");
const JS_ROUTING_PACKAGE: &str = include_str!("../templates/js/routing/package.json");
const JS_ROUTING_README: &str = include_str!("../templates/js/routing/README.md");
const JS_GITIGNORE: &str = include_str!("../templates/js/routing/gitignore");

const PY_SMS_APP: &str = include_str!("../templates/python/sms-provider/app.py");
const PY_SMS_README: &str = include_str!("../templates/python/sms-provider/README.md");
const PY_SMS_CASES: &str = include_str!("../templates/python/sms-provider/cases.toml");
const PY_GITIGNORE: &str = include_str!("../templates/python/sms-provider/gitignore");

fn world_name(world: World) -> String {
    world
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

/// Writes the project; returns its folder.
pub fn create(world: World, name: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    write_files(dir, name, files(world, name))
}

fn write_files(dir: &Path, name: &str, files: Vec<(PathBuf, String)>) -> anyhow::Result<PathBuf> {
    validate_name(name)?;
    check_target(dir)?;
    for (rel, text) in files {
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(dir.to_path_buf())
}

/// `softswitch guest new`.
pub fn run(args: &NewArgs) -> anyhow::Result<()> {
    validate_name(&args.name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let t = args.world.template();
    let lib = args.name.replace('-', "_");
    match args.lang {
        Lang::Rust => {}
        Lang::Python => {
            let dir = write_files(&dir, &args.name, python_files(args.world, &args.name)?)?;
            println!(
                "created {} guest {} in {} ({}, Python)",
                world_name(args.world),
                args.name,
                dir.display(),
                t.world_id
            );
            println!("build it with (README.md has the once-only install of componentize-py):");
            println!(
                "  cd {} && componentize-py -d wit -w provider componentize app -o {lib}.wasm",
                dir.display()
            );
            println!("test it with:");
            println!("  softswitch guest test {lib}.wasm cases.toml");
            return Ok(());
        }
        Lang::Js => {
            let dir = write_files(&dir, &args.name, js_files(args.world, &args.name)?)?;
            println!(
                "created {} guest {} in {} ({}, JavaScript)",
                world_name(args.world),
                args.name,
                dir.display(),
                t.world_id
            );
            println!("build it with:");
            println!("  cd {} && npm install && npm run build", dir.display());
            println!("test it with:");
            println!("  softswitch guest test {lib}.wasm cases.toml");
            return Ok(());
        }
    }
    let dir = create(args.world, &args.name, &dir)?;
    println!(
        "created {} guest {} in {} ({})",
        world_name(args.world),
        args.name,
        dir.display(),
        t.world_id
    );
    println!("build it with:");
    println!(
        "  cd {} && cargo build --target wasm32-wasip2 --release",
        dir.display()
    );
    println!(
        "component: {}/target/wasm32-wasip2/release/{lib}.wasm (README.md says how to load it)",
        dir.display(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORLDS: [World; 4] = [
        World::Routing,
        World::SmsProvider,
        World::Ivr,
        World::PushProvider,
    ];

    /// `0.2.0` → (0, 2, 0), for ordering the version folders.
    fn version(name: &str) -> (u32, u32, u32) {
        let mut parts = name.split('.').map(|p| p.parse::<u32>().unwrap());
        let mut next = || parts.next().unwrap();
        (next(), next(), next())
    }

    /// A new project gets the newest version of its world: the one the
    /// host speaks natively.
    #[test]
    fn embedded_wit_is_the_repositorys_newest() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
        for world in WORLDS {
            let t = world.template();
            let newest = std::fs::read_dir(root.join(world.wit_dir()))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .max_by_key(|v| version(v))
                .unwrap();
            let dir = root.join(world.wit_dir()).join(&newest);
            let on_disk: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.ends_with(".wit"))
                .collect();
            assert_eq!(
                on_disk,
                [t.wit_file],
                "{} holds other .wit files: embed them too",
                dir.display()
            );
            let file = std::fs::read_to_string(dir.join(t.wit_file)).unwrap();
            assert_eq!(t.wit, file, "embedded {} differs from the file", t.wit_file);
            let (package, rest) = t.world_id.split_once('/').unwrap();
            let (world_name, version) = rest.split_once('@').unwrap();
            assert_eq!(version, newest, "{world:?}");
            assert!(t.wit.contains(&format!("package {package}@{version};")));
            assert!(t.wit.contains(&format!("world {world_name} {{")));
        }
    }

    #[test]
    fn no_placeholder_is_left() {
        for world in WORLDS {
            for (path, text) in files(world, "my-guest") {
                assert!(!text.contains("{{"), "{} of {world:?}", path.display());
            }
        }
        for (path, text) in python_files(World::SmsProvider, "my-guest").unwrap() {
            assert!(
                !text.contains("{{"),
                "{} of the Python template",
                path.display()
            );
        }
        let error = python_files(World::Routing, "my-guest").unwrap_err();
        assert!(error.to_string().contains("sms-provider"), "{error}");
        for (path, text) in js_files(World::Routing, "my-guest").unwrap() {
            assert!(
                !text.contains("{{"),
                "{} of the JavaScript template",
                path.display()
            );
        }
        let error = js_files(World::Ivr, "my-guest").unwrap_err();
        assert!(error.to_string().contains("routing guests only"), "{error}");
    }

    #[test]
    fn names_follow_cargo_rules() {
        for ok in ["demo", "demo_routing", "my-router2", "A1"] {
            validate_name(ok).unwrap();
        }
        for bad in [
            "", "1abc", "_x", "-x", "a b", "a.b", "é", "fn", "test", "std", "self",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn an_existing_non_empty_folder_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("g");
        create(World::Routing, "g", &dir).unwrap();
        assert!(dir.join("wit/routing.wit").is_file());
        let e = create(World::Routing, "g", &dir).unwrap_err().to_string();
        assert!(e.contains("not empty"), "{e}");
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        create(World::Ivr, "g", &empty).unwrap();
    }
}
