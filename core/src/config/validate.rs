//! The rules across the whole file: every section, then the registry
//! (resources, clients, users) as a set.

use super::load::env_label;
use super::*;

impl Config {
    /// Checks cross-field rules the types cannot express.
    pub fn validate(&self, from_env: &[(String, String)]) -> Result<(), ConfigError> {
        let k = |path: &str| env_label(path, from_env);

        // server
        validate_issuer(&self.server.issuer, self.server.allow_insecure_http)
            .map_err(|(problem, fix)| err(k("server.issuer"), Some(&self.server.issuer), problem, fix))?;
        let public: SocketAddr = self.server.listen.parse().map_err(|_| {
            err(
                k("server.listen"),
                Some(&self.server.listen),
                "not a socket address",
                "write host:port, e.g. 0.0.0.0:9000",
            )
        })?;
        let admin: SocketAddr = self.admin.listen.parse().map_err(|_| {
            err(
                k("admin.listen"),
                Some(&self.admin.listen),
                "not a socket address",
                "write host:port, e.g. 0.0.0.0:9001",
            )
        })?;
        if public.port() != 0 && public.port() == admin.port() {
            return Err(err(
                k("admin.listen"),
                Some(&self.admin.listen),
                "uses the same port as server.listen",
                "give the admin listener its own port, e.g. 9001",
            ));
        }

        for (i, p) in self.server.trusted_proxies.iter().enumerate() {
            if parse_net(p).is_none() {
                return Err(err(
                    k(&format!("server.trusted_proxies[{i}]")),
                    Some(p),
                    "not an IP address or CIDR range",
                    "write e.g. 10.0.0.0/8 or 192.0.2.7",
                ));
            }
        }
        if self.server.request_read_timeout.is_zero() {
            return Err(err(k("server.request_read_timeout"), Some("0"), "must be greater than zero", "use e.g. 5s"));
        }
        if self.server.max_connections == 0 {
            return Err(err(k("server.max_connections"), Some("0"), "must be at least 1", "use e.g. 4096"));
        }

        // admin
        if let Some(key) = &self.admin.api_key
            && key.expose().len() < 16
        {
            return Err(err(
                k("admin.api_key"),
                Some("[redacted]"),
                "shorter than 16 characters",
                "use a long random key, e.g. `openssl rand -hex 32`",
            ));
        }
        if self.admin.api_key.is_some() && self.admin.api_key_file.is_some() {
            return Err(err(
                k("admin.api_key_file"),
                self.admin.api_key_file.as_deref(),
                "set together with admin.api_key",
                "set only one of them",
            ));
        }

        // database
        let url = self.database.url.expose();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(err(
                k("database.url"),
                Some(&self.database.redacted_url()),
                "unsupported database URL",
                "use sqlite://path/to/file.db?mode=rwc or postgres://user:pass@host:5432/db",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(err(k("database.max_connections"), Some("0"), "must be at least 1", "set e.g. 10"));
        }
        if self.database.kind() == DatabaseKind::Sqlite {
            if let Some(mode) = self.database.sslmode {
                return Err(err(
                    k("database.sslmode"),
                    Some(mode.as_str()),
                    "only applies to postgres:// URLs",
                    "remove it, or point database.url at Postgres",
                ));
            }
            if let Some(path) = &self.database.sslrootcert {
                return Err(err(
                    k("database.sslrootcert"),
                    Some(path),
                    "only applies to postgres:// URLs",
                    "remove it, or point database.url at Postgres",
                ));
            }
        }
        if self.database.sslrootcert.as_deref().is_some_and(|p| p.trim().is_empty()) {
            return Err(err(
                k("database.sslrootcert"),
                Some(""),
                "empty",
                "set the path of the CA's PEM file, or remove the key",
            ));
        }
        if matches!(self.database.sslmode, Some(SslMode::Disable | SslMode::Prefer | SslMode::Require))
            && let Some(path) = &self.database.sslrootcert
        {
            return Err(err(
                k("database.sslrootcert"),
                Some(path),
                format!(
                    "is not used with database.sslmode = {}: the certificate is not verified",
                    self.database.sslmode.map(SslMode::as_str).unwrap_or_default()
                ),
                "set database.sslmode to verify-full (or verify-ca)",
            ));
        }
        if self.database.acquire_timeout.is_zero() {
            return Err(err(k("database.acquire_timeout"), Some("0s"), "must be longer than zero", "set e.g. 5s"));
        }

        // signing
        if self.signing.key_store == KeyStoreKind::File && self.signing.key_dir.trim().is_empty() {
            return Err(err(
                k("signing.key_dir"),
                Some(""),
                "empty while signing.key_store is file",
                "set a directory, e.g. ./data/keys",
            ));
        }
        if !self.signing.rotation_interval.is_zero()
            && self.signing.rotation_interval <= self.signing.publish_ahead + self.retire_after()
        {
            return Err(err(
                k("signing.rotation_interval"),
                Some(&self.signing.rotation_interval.to_string()),
                format!(
                    "must be longer than publish_ahead + retire_after ({} + {})",
                    self.signing.publish_ahead,
                    self.retire_after()
                ),
                "rotate less often, or shorten the access-token lifetime",
            ));
        }

        // oauth
        for (name, d) in [
            ("oauth.access_token_ttl", self.oauth.access_token_ttl),
            ("oauth.refresh_token_ttl", self.oauth.refresh_token_ttl),
            ("oauth.authorization_code_ttl", self.oauth.authorization_code_ttl),
        ] {
            if d.is_zero() {
                return Err(err(k(name), Some("0"), "must be greater than zero", "set a duration such as 1h"));
            }
        }
        if self.oauth.registration == RegistrationPolicy::Token {
            match &self.oauth.initial_access_token {
                Some(t) if t.expose().len() >= 16 => {}
                _ => {
                    return Err(err(
                        k("oauth.initial_access_token"),
                        None,
                        "missing or shorter than 16 characters while oauth.registration is token",
                        "set a long random token, e.g. `openssl rand -hex 32`",
                    ));
                }
            }
        }
        let age = self.oauth.dpop_proof_max_age.as_secs();
        if !(5..=600).contains(&age) {
            return Err(err(
                k("oauth.dpop_proof_max_age"),
                Some(&self.oauth.dpop_proof_max_age.to_string()),
                "must be between 5s and 10m",
                "use 60s (the default) unless clients' clocks are far off; a longer window keeps replayable proofs alive longer",
            ));
        }
        if let Some(secret) = &self.oauth.dpop_nonce_secret
            && secret.expose().len() < 32
        {
            return Err(err(
                k("oauth.dpop_nonce_secret"),
                None,
                "is shorter than 32 characters",
                "generate one with `openssl rand -base64 32` and give every replica the same value",
            ));
        }
        if self.oauth.refresh_reuse_interval.as_secs() > 300 {
            return Err(err(
                k("oauth.refresh_reuse_interval"),
                Some(&self.oauth.refresh_reuse_interval.to_string()),
                "longer than 5 minutes: a stolen spent refresh token would stay useful that long",
                "use 30s, or 0 to turn it off",
            ));
        }
        if self.limits.password_hash_queue_timeout.is_zero() {
            return Err(err(
                k("limits.password_hash_queue_timeout"),
                Some("0"),
                "must be greater than zero",
                "use e.g. 5s",
            ));
        }
        if self.oauth.authorization_code_ttl.as_secs() > 600 {
            return Err(err(
                k("oauth.authorization_code_ttl"),
                Some(&self.oauth.authorization_code_ttl.to_string()),
                "longer than 10 minutes (RFC 6749 §4.1.2)",
                "use 60s",
            ));
        }

        // log
        if LogLevel::parse(&self.log.level).is_none() {
            return Err(err(
                k("log.level"),
                Some(&self.log.level),
                "not a log level",
                "use error, warn, info, debug or trace",
            ));
        }

        // otel
        if self.otel.enabled() {
            let ep = self.otel.endpoint.trim();
            let url = url::Url::parse(ep).ok().filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
            if url.is_none() {
                return Err(err(
                    k("otel.endpoint"),
                    Some(ep),
                    "not an http(s) URL",
                    "write the collector's URL, e.g. http://otel-collector:4318",
                ));
            }
            if self.otel.protocol == OtelProtocol::Grpc && ep.starts_with("https:") {
                return Err(err(
                    k("otel.endpoint"),
                    Some(ep),
                    "https is not supported with otel.protocol grpc",
                    "use protocol http/protobuf for a TLS endpoint, or a plaintext in-cluster collector",
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.otel.sample_ratio) {
            return Err(err(
                k("otel.sample_ratio"),
                Some(&self.otel.sample_ratio.to_string()),
                "outside 0.0–1.0",
                "use e.g. 0.1 to record one trace in ten",
            ));
        }
        if self.otel.service_name.trim().is_empty() {
            return Err(err(k("otel.service_name"), Some(""), "empty", "use e.g. authplane"));
        }

        self.validate_registry()
    }

    fn validate_registry(&self) -> Result<(), ConfigError> {
        let mut seen = HashSet::new();
        for (i, r) in self.resources.iter().enumerate() {
            let key = format!("resources[{i}]");
            validate_resource(&key, r)?;
            if !seen.insert(r.resource.clone()) {
                return Err(err(
                    format!("{key}.resource"),
                    Some(r.resource.as_str()),
                    "declared twice (after canonicalisation)",
                    "keep one entry per resource",
                ));
            }
        }
        let mut ids = HashSet::new();
        for (i, c) in self.clients.iter().enumerate() {
            let key = format!("clients[{i}]");
            validate_client(&key, c, |r| seen.contains(r))?;
            if !ids.insert(c.client_id.as_str()) {
                return Err(err(
                    format!("{key}.client_id"),
                    Some(&c.client_id),
                    "declared twice",
                    "client ids must be unique",
                ));
            }
        }
        let mut names = HashSet::new();
        let mut subs = HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let key = format!("users[{i}]");
            validate_user(&key, u)?;
            if !names.insert(u.username.as_str()) {
                return Err(err(
                    format!("{key}.username"),
                    Some(&u.username),
                    "declared twice",
                    "usernames must be unique",
                ));
            }
            if !subs.insert(u.subject()) {
                return Err(err(format!("{key}.id"), Some(u.subject()), "declared twice", "user ids must be unique"));
            }
        }
        // Users signed in through an upstream get the id `<upstream>:<subject>`.
        for (i, u) in self.users.iter().enumerate() {
            if let Some(up) = self.upstreams.iter().find(|up| u.subject().starts_with(&format!("{}:", up.id))) {
                return Err(err(
                    format!("users[{i}].id"),
                    Some(u.subject()),
                    format!("starts with \"{}:\", the prefix of users signed in through that upstream", up.id),
                    "pick another id",
                ));
            }
        }
        let mut upstream_ids = HashSet::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            let key = format!("upstreams[{i}]");
            validate_upstream(&key, u)?;
            if !upstream_ids.insert(u.id.as_str()) {
                return Err(err(format!("{key}.id"), Some(&u.id), "declared twice", "upstream ids must be unique"));
            }
        }
        // The broker: a client may obtain a user's upstream tokens only for
        // upstreams that keep them, only as a confidential client, and only
        // in exchange for tokens issued for its own resources.
        for (i, c) in self.clients.iter().enumerate() {
            let key = format!("clients[{i}].broker_upstreams");
            for id in &c.broker_upstreams {
                match self.upstreams.iter().find(|u| &u.id == id) {
                    None => {
                        return Err(err(key, Some(id), "names no upstream", "list ids from upstreams[].id"));
                    }
                    Some(u) if !u.store_tokens => {
                        return Err(err(
                            key,
                            Some(id),
                            "that upstream does not keep tokens",
                            format!("set store_tokens: true on upstream {id}"),
                        ));
                    }
                    Some(_) => {}
                }
            }
            if !c.broker_upstreams.is_empty() && !c.token_endpoint_auth_method.is_confidential() {
                return Err(err(
                    key,
                    Some(&c.broker_upstreams.join(",")),
                    "only a confidential client may broker upstream tokens",
                    "give the MCP server's client a secret (client_secret_basic or client_secret_post)",
                ));
            }
            if !c.broker_upstreams.is_empty() && c.allowed_resources.is_empty() {
                return Err(err(
                    format!("clients[{i}].allowed_resources"),
                    None,
                    "empty on a client with broker_upstreams",
                    "list the MCP server's own resource: only tokens issued for it can be exchanged",
                ));
            }
        }
        if let Some(f) = &self.broker.encryption_key_file
            && f.trim().is_empty()
        {
            return Err(err("broker.encryption_key_file", Some(f), "empty", "name a file, or remove the key"));
        }
        if self.upstreams.iter().any(|u| u.store_tokens)
            && self.broker.encryption_key_file.is_none()
            && self.signing.key_store != KeyStoreKind::File
        {
            return Err(err(
                "broker.encryption_key_file",
                None,
                "missing: store_tokens needs a key, and with signing.key_store db there is no key directory to create it in",
                "set broker.encryption_key_file to a file of `<key id> <base64 of 32 random bytes>` lines (`echo k1 $(head -c32 /dev/urandom | base64)`)",
            ));
        }
        Ok(())
    }
}
