//! Client authentication at the token, revocation and introspection
//! endpoints: `client_secret_basic`, `client_secret_post`, `none` (RFC 6749
//! §2.3.1, OAuth 2.1 §2.4). Secrets are compared as SHA-256 digests in
//! constant time.

use authplane_core::Secret;
use authplane_core::config::ClientConfig;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::error::{Error, Kind};

/// What the request presented.
#[derive(Debug, Clone)]
pub struct Presented {
    pub client_id: String,
    pub secret: Option<Secret<String>>,
    pub via_basic: bool,
}

fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

/// Reads the credentials from the `Authorization` header or the form.
pub fn presented(
    authorization: Option<&str>,
    form_client_id: Option<&str>,
    form_secret: Option<&str>,
) -> Result<Presented, Error> {
    if let Some(h) = authorization
        && let Some(b64) = h.strip_prefix("Basic ").or_else(|| h.strip_prefix("basic "))
    {
        if form_secret.is_some() {
            return Err(Error::new(
                Kind::InvalidRequest,
                "use one client authentication method, not both (RFC 6749 §2.3)",
            ));
        }
        let raw =
            STANDARD.decode(b64.trim()).map_err(|_| Error::new(Kind::InvalidClient, "malformed Basic credentials"))?;
        let text =
            String::from_utf8(raw).map_err(|_| Error::new(Kind::InvalidClient, "malformed Basic credentials"))?;
        let (id, secret) =
            text.split_once(':').ok_or_else(|| Error::new(Kind::InvalidClient, "malformed Basic credentials"))?;
        // RFC 6749 §2.3.1: both parts are form-urlencoded inside Basic.
        let id = form_decode(id);
        if let Some(fid) = form_client_id
            && fid != id
        {
            return Err(Error::new(Kind::InvalidRequest, "client_id differs from the authenticated client"));
        }
        return Ok(Presented { client_id: id, secret: Some(Secret::new(form_decode(secret))), via_basic: true });
    }
    let id = form_client_id.filter(|s| !s.is_empty()).ok_or_else(|| {
        Error::new(
            Kind::InvalidClient,
            "client authentication required: send client_id (public clients) or client credentials",
        )
    })?;
    Ok(Presented { client_id: id.to_owned(), secret: form_secret.map(|s| Secret::new(s.to_owned())), via_basic: false })
}

/// Checks the presented credentials against the registered client.
pub fn verify(client: &ClientConfig, p: &Presented) -> Result<(), Error> {
    match (client.token_endpoint_auth_method.is_confidential(), &p.secret, &client.client_secret_sha256) {
        (true, Some(secret), Some(digest)) => {
            let _span =
                tracing::debug_span!("crypto.verify", authplane.layer = "crypto", purpose = "client_secret").entered();
            let presented = crate::random::sha256_hex(secret.expose().as_bytes());
            use subtle::ConstantTimeEq;
            if presented.as_bytes().ct_eq(digest.to_ascii_lowercase().as_bytes()).into() {
                Ok(())
            } else {
                Err(Error::new(Kind::InvalidClient, "client authentication failed"))
            }
        }
        (true, _, _) => Err(Error::new(
            Kind::InvalidClient,
            "client authentication failed: a confidential client must send its secret",
        )),
        (false, None, _) => Ok(()),
        (false, Some(_), _) => {
            Err(Error::new(Kind::InvalidClient, "client authentication failed: a public client has no secret"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let h = format!("Basic {}", STANDARD.encode("my%20client:p%40ss"));
        let p = presented(Some(&h), None, None).unwrap();
        assert_eq!(p.client_id, "my client");
        assert_eq!(p.secret.unwrap().expose(), "p@ss");
        assert!(presented(Some(&h), None, Some("x")).is_err(), "two methods at once");
        assert!(presented(Some("Basic !!!"), None, None).is_err());
        assert!(presented(None, None, None).is_err());
    }
}
