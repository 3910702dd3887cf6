//! `authserver`: see `authserver --help`.
#![forbid(unsafe_code)]

use std::io::Read;
use std::process::ExitCode;

use authplane_core::config::KeyStoreKind;
use authplane_server::cli::{Cli, Command, ConfigCommand, KeysCommand, Output, UtilCommand};
use authplane_server::keys::{KeyManager, KeyStore, Timings};
use authplane_server::{app, build_info, cli, clock, configfile, password, store, telemetry};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authserver: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let config_path = cli.config.clone();
    let registry_dir = cli.registry_dir.clone();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Version => {
            println!(
                "authserver {} (commit {}, built {})",
                build_info::VERSION,
                build_info::GIT_COMMIT,
                build_info::BUILD_DATE
            );
            Ok(())
        }
        Command::Serve => {
            let loaded = configfile::load(config_path.as_deref(), registry_dir.as_deref())?;
            let _guard = telemetry::init(&loaded.config.log.level, loaded.config.log.format, &loaded.config.otel)?;
            let result = actix_web::rt::System::new().block_on(app::serve(loaded, config_path, registry_dir));
            if let Err(e) = &result {
                tracing::error!(error = "ErrStartup", detail = %e, "authserver cannot start");
            }
            result
        }
        Command::Config { command: ConfigCommand::Check } => {
            let loaded = configfile::load(config_path.as_deref(), registry_dir.as_deref())?;
            configfile::admin_key(&loaded.config)?;
            let c = &loaded.config;
            println!(
                "config OK: issuer={} db={} key_store={} resources={} clients={} users={} admin_api={}",
                c.server.issuer,
                c.database.kind(),
                c.signing.key_store,
                c.resources.len(),
                c.clients.len(),
                c.users.len(),
                if c.admin.api_key.is_some() || c.admin.api_key_file.is_some() { "on" } else { "off" }
            );
            Ok(())
        }
        Command::Migrate => {
            let loaded = configfile::load(config_path.as_deref(), registry_dir.as_deref())?;
            runtime()?.block_on(async {
                let (db, info) = store::connect(&loaded.config.database).await?;
                // The same lock as `serve`, so a migrate Job and starting replicas take turns.
                let lock = store::startup_lock(&loaded.config.database).await?;
                let n = store::migrate(&db).await?;
                if let Some(lock) = lock {
                    lock.release().await;
                }
                println!("{n} migration(s) applied to {} ({})", info.redacted_url, info.kind);
                Ok(())
            })
        }
        Command::Doctor(args) => {
            let token = match args.token.as_deref() {
                Some("-") => {
                    let mut t = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut t)
                        .map_err(|e| format!("cannot read the token from stdin: {e}"))?;
                    Some(t.trim().to_owned())
                }
                other => other.map(str::to_owned),
            };
            let target = authplane_server::doctor::Target {
                issuer: args.issuer,
                admin_url: args.admin_url,
                resource: args.resource,
                mcp_url: args.mcp_url,
                token,
                admin_key: std::env::var("AUTHPLANE_ADMIN_API_KEY").ok().filter(|k| !k.is_empty()),
            };
            let report = runtime()?.block_on(authplane_server::doctor::run(&target, authplane_server::clock::now()));
            match args.output {
                cli::Output::Json => println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default()),
                cli::Output::Table => print!("{}", authplane_server::doctor::render(&report)),
            }
            if report.ok { Ok(()) } else { Err("doctor: a step failed (see its fix above)".into()) }
        }
        Command::Admin(args) => {
            let text = runtime()?.block_on(cli::run_admin(args))?;
            println!("{text}");
            Ok(())
        }
        Command::Keys { command } => {
            let loaded = configfile::load(config_path.as_deref(), registry_dir.as_deref())?;
            let cfg = loaded.config;
            runtime()?.block_on(async {
                let store = match cfg.signing.key_store {
                    KeyStoreKind::File => KeyStore::File { dir: cfg.signing.key_dir.clone().into() },
                    KeyStoreKind::Db => {
                        let (db, _) = store::connect(&cfg.database).await?;
                        KeyStore::Db { db }
                    }
                };
                let now = clock::now();
                let mut lock = None;
                if let KeyStore::Db { db } = &store {
                    lock = store::startup_lock(&cfg.database).await?;
                    store::migrate(db).await?;
                }
                let keys = KeyManager::open(store, Timings::from_config(&cfg), now)
                    .await
                    .map_err(|e| format!("signing keys: {e}"))?;
                if let Some(lock) = lock {
                    lock.release().await;
                }
                match command {
                    KeysCommand::List { output } => {
                        let list = keys.list(now);
                        let v = serde_json::to_value(&list).map_err(|e| e.to_string())?;
                        if output == Output::Json {
                            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                        } else {
                            let rows: Vec<serde_json::Value> = list
                                .iter()
                                .map(|k| {
                                    serde_json::json!({
                                        "kid": k.kid, "phase": k.phase.as_str(),
                                        "created": clock::rfc3339(k.created_at),
                                        "active_from": clock::rfc3339(k.active_from),
                                        "retires": k.retires_at.map(clock::rfc3339),
                                    })
                                })
                                .collect();
                            println!(
                                "{}",
                                cli::render(
                                    Output::Table,
                                    &serde_json::Value::Array(rows),
                                    &[
                                        ("KID", "kid"),
                                        ("PHASE", "phase"),
                                        ("CREATED", "created"),
                                        ("ACTIVE_FROM", "active_from"),
                                        ("RETIRES", "retires")
                                    ]
                                )
                            );
                            if let Some(at) = keys.next_rotation(now) {
                                println!("next automatic rotation: {}", clock::rfc3339(at));
                            }
                        }
                    }
                    KeysCommand::Rotate { immediate } => {
                        let k = keys.rotate(now, immediate).await.map_err(|e| format!("rotation failed: {e}"))?;
                        let pruned = keys.prune(now).await.map_err(|e| format!("pruning retired keys failed: {e}"))?;
                        println!(
                            "published {} (signs from {}){}",
                            k.kid,
                            clock::rfc3339(k.active_from),
                            if pruned.is_empty() {
                                String::new()
                            } else {
                                format!("; removed retired {}", pruned.join(", "))
                            }
                        );
                    }
                }
                Ok(())
            })
        }
        Command::Util { command: UtilCommand::HashPassword } => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|e| format!("cannot read stdin: {e}"))?;
            let pw = s.trim_end_matches(['\n', '\r']);
            if pw.is_empty() {
                return Err("give the password on stdin, e.g. `printf %s 'pw' | authserver util hash-password`".into());
            }
            println!("{}", password::hash(pw).map_err(|e| e.to_string())?);
            Ok(())
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}
