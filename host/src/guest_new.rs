//! `softswitch guest new`: a standalone Cargo project for one guest world.
//!
//! Everything the project needs is compiled into the binary (the templates
//! under `host/templates/` and the worlds' WIT from `wit/<world>/<version>/`,
//! the newest version of each), so an installed
//! `softswitch` writes the same project as one run from the repository. The
//! project depends on nothing in this repository: `wit-bindgen` (the version
//! the repository's guests use) and, for the provider worlds, `serde_json`.
//!
//! `--lang python` and `--lang js` write a Python (componentize-py) or
//! JavaScript (componentize-js) project instead, for every world: the app,
//! the world's WIT, a README with the one build command, and a `cases.toml`
//! for `softswitch guest test`.

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
    /// Language of the project, for every world: Rust (cargo), Python
    /// (componentize-py) or JavaScript (componentize-js).
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
    /// Cases for `softswitch guest test` (the Python and JavaScript
    /// projects of the world share them).
    cases: &'static str,
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
                cases: include_str!("../templates/routing/cases.toml"),
            },
            World::SmsProvider => Template {
                world_id: "softswitch:sms-provider/provider@0.2.0",
                wit_file: "sms-provider.wit",
                wit: include_str!("../../wit/sms-provider/0.2.0/sms-provider.wit"),
                cargo_toml: include_str!("../templates/sms-provider/Cargo.toml"),
                lib_rs: include_str!("../templates/sms-provider/src/lib.rs"),
                readme: include_str!("../templates/sms-provider/README.md"),
                cases: JS_SMS_CASES,
            },
            World::Ivr => Template {
                world_id: "softswitch:ivr/scenario@0.1.0",
                wit_file: "ivr.wit",
                wit: include_str!("../../wit/ivr/0.1.0/ivr.wit"),
                cargo_toml: include_str!("../templates/ivr/Cargo.toml"),
                lib_rs: include_str!("../templates/ivr/src/lib.rs"),
                readme: include_str!("../templates/ivr/README.md"),
                cases: IVR_CASES,
            },
            World::PushProvider => Template {
                world_id: "softswitch:push-provider/provider@0.1.0",
                wit_file: "push-provider.wit",
                wit: include_str!("../../wit/push-provider/0.1.0/push-provider.wit"),
                cargo_toml: include_str!("../templates/push-provider/Cargo.toml"),
                lib_rs: include_str!("../templates/push-provider/src/lib.rs"),
                readme: include_str!("../templates/push-provider/README.md"),
                cases: PUSH_CASES,
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
    vec![
        ("Cargo.toml".into(), fill(t.cargo_toml)),
        ("src/lib.rs".into(), fill(t.lib_rs)),
        ("README.md".into(), fill(t.readme)),
        (".gitignore".into(), GITIGNORE.to_string()),
        (Path::new("wit").join(t.wit_file), t.wit.to_string()),
        ("cases.toml".into(), fill(t.cases)),
    ]
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
fn other_language_files(
    world: World,
    name: &str,
    files: &[(&str, &str)],
    gitignore: &str,
) -> Vec<(PathBuf, String)> {
    let t = world.template();
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
    out
}

/// The routing template's cases: the Python and JavaScript routers decide
/// like the Rust one.
fn routing_cases() -> &'static str {
    World::Routing.template().cases
}

/// The files of a Python project: `app.py` (componentize-py), its cases,
/// a README.
fn python_files(world: World, name: &str) -> Vec<(PathBuf, String)> {
    let (app, readme, cases) = match world {
        World::Routing => (PY_ROUTING_APP, PY_ROUTING_README, routing_cases()),
        World::SmsProvider => (PY_SMS_APP, PY_SMS_README, PY_SMS_CASES),
        World::Ivr => (PY_IVR_APP, PY_IVR_README, IVR_CASES),
        World::PushProvider => (PY_PUSH_APP, PY_PUSH_README, PUSH_CASES),
    };
    let files = [
        ("app.py", app),
        ("README.md", readme),
        ("cases.toml", cases),
    ];
    other_language_files(world, name, &files, PY_GITIGNORE)
}

/// The files of a JavaScript project: `app.js`, a `package.json` pinning
/// componentize-js, its cases, a README.
fn js_files(world: World, name: &str) -> Vec<(PathBuf, String)> {
    let (app, package, readme, cases) = match world {
        World::Routing => (
            JS_ROUTING_APP,
            JS_ROUTING_PACKAGE,
            JS_ROUTING_README,
            routing_cases(),
        ),
        World::SmsProvider => (JS_SMS_APP, JS_SMS_PACKAGE, JS_SMS_README, JS_SMS_CASES),
        World::Ivr => (JS_IVR_APP, JS_IVR_PACKAGE, JS_IVR_README, IVR_CASES),
        World::PushProvider => (JS_PUSH_APP, JS_PUSH_PACKAGE, JS_PUSH_README, PUSH_CASES),
    };
    let files = [
        ("app.js", app),
        ("package.json", package),
        ("README.md", readme),
        ("cases.toml", cases),
    ];
    other_language_files(world, name, &files, JS_GITIGNORE)
}

const JS_ROUTING_APP: &str = include_str!("../templates/js/routing/app.js");
const JS_ROUTING_PACKAGE: &str = include_str!("../templates/js/routing/package.json");
const JS_ROUTING_README: &str = include_str!("../templates/js/routing/README.md");
const JS_SMS_APP: &str = include_str!("../templates/js/sms-provider/app.js");
const JS_SMS_PACKAGE: &str = include_str!("../templates/js/sms-provider/package.json");
const JS_SMS_README: &str = include_str!("../templates/js/sms-provider/README.md");
const JS_SMS_CASES: &str = include_str!("../templates/js/sms-provider/cases.toml");
const JS_IVR_APP: &str = include_str!("../templates/js/ivr/app.js");
const JS_IVR_PACKAGE: &str = include_str!("../templates/js/ivr/package.json");
const JS_IVR_README: &str = include_str!("../templates/js/ivr/README.md");
const JS_PUSH_APP: &str = include_str!("../templates/js/push-provider/app.js");
const JS_PUSH_PACKAGE: &str = include_str!("../templates/js/push-provider/package.json");
const JS_PUSH_README: &str = include_str!("../templates/js/push-provider/README.md");
const JS_GITIGNORE: &str = include_str!("../templates/js/routing/gitignore");

const PY_ROUTING_APP: &str = include_str!("../templates/python/routing/app.py");
const PY_ROUTING_README: &str = include_str!("../templates/python/routing/README.md");
const PY_SMS_APP: &str = include_str!("../templates/python/sms-provider/app.py");
const PY_SMS_README: &str = include_str!("../templates/python/sms-provider/README.md");
const PY_SMS_CASES: &str = include_str!("../templates/python/sms-provider/cases.toml");
const PY_IVR_APP: &str = include_str!("../templates/python/ivr/app.py");
const PY_IVR_README: &str = include_str!("../templates/python/ivr/README.md");
const PY_PUSH_APP: &str = include_str!("../templates/python/push-provider/app.py");
const PY_PUSH_README: &str = include_str!("../templates/python/push-provider/README.md");
const PY_GITIGNORE: &str = include_str!("../templates/python/sms-provider/gitignore");

/// The IVR and push provider cases, shared by the Python and JavaScript
/// templates (the two flows, and the two webhooks, behave alike).
const IVR_CASES: &str = include_str!("../templates/python/ivr/cases.toml");
const PUSH_CASES: &str = include_str!("../templates/python/push-provider/cases.toml");

/// The name of the world inside its WIT package (`router`, `provider`,
/// `scenario`): what componentize-py's `-w` takes.
fn wit_world_name(world_id: &str) -> &str {
    world_id
        .split_once('/')
        .and_then(|(_, rest)| rest.split_once('@'))
        .map_or(world_id, |(name, _)| name)
}

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
    // An IVR guest's cases play the switch's prompts.
    let prompts = match args.world {
        World::Ivr => " --prompts <the switch's prompts folder>",
        _ => "",
    };
    match args.lang {
        Lang::Rust => {}
        Lang::Python => {
            let dir = write_files(&dir, &args.name, python_files(args.world, &args.name))?;
            println!(
                "created {} guest {} in {} ({}, Python)",
                world_name(args.world),
                args.name,
                dir.display(),
                t.world_id
            );
            println!("build it with (README.md has the once-only install of componentize-py):");
            println!(
                "  cd {} && componentize-py -d wit -w {} componentize app -o {lib}.wasm",
                dir.display(),
                wit_world_name(t.world_id)
            );
            println!("test it with:");
            println!("  softswitch guest test {lib}.wasm cases.toml{prompts}");
            return Ok(());
        }
        Lang::Js => {
            let dir = write_files(&dir, &args.name, js_files(args.world, &args.name))?;
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
            println!("  softswitch guest test {lib}.wasm cases.toml{prompts}");
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
        for world in WORLDS {
            for (lang, files) in [
                ("Python", python_files(world, "my-guest")),
                ("JavaScript", js_files(world, "my-guest")),
            ] {
                for (path, text) in files {
                    assert!(
                        !text.contains("{{"),
                        "{} of the {lang} template of {world:?}",
                        path.display()
                    );
                }
            }
        }
    }

    /// Each Python and JavaScript project builds the world of its WIT
    /// (componentize-py's `-w`, componentize-js's `--world-name`) and
    /// carries cases for `softswitch guest test`.
    #[test]
    fn other_languages_build_the_right_world() {
        for world in WORLDS {
            let wit_world = wit_world_name(world.template().world_id);
            let py = python_files(world, "g");
            let js = js_files(world, "g");
            let file = |files: &[(PathBuf, String)], name: &str| {
                files
                    .iter()
                    .find(|(path, _)| path == Path::new(name))
                    .map(|(_, text)| text.clone())
                    .unwrap_or_else(|| panic!("no {name} for {world:?}"))
            };
            assert!(
                file(&py, "README.md").contains(&format!(
                    ".venv/bin/componentize-py -d wit -w {wit_world} componentize app -o g.wasm"
                )),
                "{world:?}"
            );
            assert!(
                file(&js, "package.json").contains(&format!(
                    "--world-name {wit_world} -d http fetch-event stdio"
                )),
                "{world:?}"
            );
            for files in [&py, &js] {
                let cases = file(files, "cases.toml");
                assert!(cases.contains("expect"), "{world:?}");
                let readme = file(files, "README.md");
                assert!(readme.contains("softswitch guest test g.wasm cases.toml"));
                assert_eq!(
                    readme.contains("--prompts"),
                    world == World::Ivr,
                    "{world:?}: IVR cases need the switch's prompts"
                );
            }
        }
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
