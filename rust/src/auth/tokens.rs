//! The tokens that name a user on the calls after Authenticate
//! (`--auth-token`), as etcd makes them:
//!
//! - `simple` (the default): `<16 random letters>.<Raft index>`, kept in
//!   memory by every member as it applies the Authenticate entry, forgotten
//!   after `--auth-token-ttl` seconds unused (each use renews it), on a
//!   restart, when the user is deleted or changes password, and when auth
//!   is disabled. A simple token names the user only: the revision it
//!   carries is the auth store's at the time of use (etcd's tokenSimple.info).
//! - `jwt,pub-key=F,priv-key=F,sign-method=M,ttl=D`: a signed JWT with
//!   claims `username`, `revision` (the auth revision it was issued at) and
//!   `exp`; any member holding the public key verifies it. A member given
//!   only the public key verifies but cannot issue.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parking_lot::Mutex;

use super::AuthInfo;
use crate::error::EtcdError;

/// etcd's defaultSimpleTokenLength.
const SIMPLE_TOKEN_LETTERS: usize = 16;
/// etcd's jwt DefaultTTL.
const JWT_DEFAULT_TTL: Duration = Duration::from_mins(5);

struct SimpleToken {
    username: String,
    expires: Instant,
}

struct Jwt {
    algorithm: Algorithm,
    signing: Option<EncodingKey>,
    verifying: DecodingKey,
    ttl: Duration,
}

enum Provider {
    Simple { ttl: Duration, tokens: Mutex<HashMap<String, SimpleToken>> },
    Jwt(Box<Jwt>),
}

/// This member's token provider.
pub struct Tokens {
    provider: Provider,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_jwt() { "Tokens(jwt)" } else { "Tokens(simple)" })
    }
}

impl Tokens {
    pub fn simple(ttl: Duration) -> Tokens {
        Tokens { provider: Provider::Simple { ttl, tokens: Mutex::new(HashMap::new()) } }
    }

    /// From etcd's `--auth-token` value (`simple`, or `jwt,` and options);
    /// `simple_ttl` is `--auth-token-ttl`. The error is etcd's words.
    pub fn from_flag(flag: &str, simple_ttl: Duration) -> Result<Tokens, String> {
        let mut parts = flag.split(',');
        let kind = parts.next().unwrap_or("");
        let mut opts: HashMap<&str, &str> = HashMap::new();
        for part in parts {
            let Some((k, v)) = part.split_once('=').filter(|(_, v)| !v.contains('=')) else {
                return Err("auth: invalid auth options".into());
            };
            if opts.insert(k, v).is_some() {
                return Err("auth: invalid auth options".into());
            }
        }
        match kind {
            "simple" => Ok(Tokens::simple(simple_ttl)),
            "jwt" => Ok(Tokens { provider: Provider::Jwt(Box::new(jwt_from_options(&opts)?)) }),
            _ => Err("auth: invalid auth options".into()),
        }
    }

    pub fn is_jwt(&self) -> bool {
        matches!(self.provider, Provider::Jwt(_))
    }

    /// Random letters for a simple token (etcd's genTokenPrefix).
    pub fn gen_prefix() -> String {
        const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut raw = [0u8; SIMPLE_TOKEN_LETTERS];
        getrandom::getrandom(&mut raw).expect("the OS random source works");
        raw.iter().map(|b| LETTERS[usize::from(*b) % LETTERS.len()] as char).collect()
    }

    /// Records a simple token as its Authenticate entry applies (every member).
    pub fn assign_simple(&self, prefix: &str, index: u64, username: &str) -> Option<String> {
        let Provider::Simple { ttl, tokens } = &self.provider else {
            return None;
        };
        let token = format!("{prefix}.{index}");
        let now = Instant::now();
        let mut tokens = tokens.lock();
        tokens.retain(|_, t| t.expires > now);
        tokens.insert(token.clone(), SimpleToken { username: username.to_owned(), expires: now + *ttl });
        Some(token)
    }

    /// Signs a JWT for `username` at auth revision `revision`.
    pub fn sign_jwt(&self, username: &str, revision: u64) -> Result<String, EtcdError> {
        let Provider::Jwt(jwt) = &self.provider else {
            return Err(EtcdError::Internal("auth: a simple token provider signs nothing".into()));
        };
        let Some(key) = &jwt.signing else {
            return Err(EtcdError::Internal("auth: token signing attempted with verify-only key".into()));
        };
        let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + jwt.ttl;
        let claims = serde_json::json!({ "username": username, "revision": revision, "exp": exp.as_secs() });
        jsonwebtoken::encode(&Header::new(jwt.algorithm), &claims, key)
            .map_err(|e| EtcdError::Internal(format!("auth: signing a token: {e}")))
    }

    /// Who a token names, or None if it is unknown, expired or forged.
    /// `current_revision` is what a simple token reports (see the module doc).
    pub fn info(&self, token: &str, current_revision: u64) -> Option<AuthInfo> {
        match &self.provider {
            Provider::Simple { ttl, tokens } => {
                let now = Instant::now();
                let mut tokens = tokens.lock();
                let entry = tokens.get_mut(token)?;
                if entry.expires <= now {
                    tokens.remove(token);
                    return None;
                }
                entry.expires = now + *ttl;
                Some(AuthInfo { username: entry.username.clone(), revision: current_revision })
            }
            Provider::Jwt(jwt) => {
                let mut validation = Validation::new(jwt.algorithm);
                validation.leeway = 0;
                validation.validate_aud = false;
                let data = jsonwebtoken::decode::<serde_json::Value>(token, &jwt.verifying, &validation).ok()?;
                let username = data.claims.get("username")?.as_str()?.to_owned();
                let revision = data.claims.get("revision")?.as_f64()? as u64;
                Some(AuthInfo { username, revision })
            }
        }
    }

    /// etcd's invalidateUser: the user was deleted or changed password.
    pub fn invalidate_user(&self, username: &str) {
        if let Provider::Simple { tokens, .. } = &self.provider {
            tokens.lock().retain(|_, t| t.username != username);
        }
    }

    /// Auth was disabled: every simple token is forgotten.
    pub fn disable(&self) {
        if let Provider::Simple { tokens, .. } = &self.provider {
            tokens.lock().clear();
        }
    }
}

fn jwt_from_options(opts: &HashMap<&str, &str>) -> Result<Jwt, String> {
    for k in opts.keys() {
        if !matches!(*k, "sign-method" | "pub-key" | "priv-key" | "ttl") {
            return Err("auth: invalid auth options".into());
        }
    }
    let ttl = match opts.get("ttl") {
        Some(t) if !t.is_empty() => parse_go_duration(t).ok_or_else(|| format!("time: invalid duration \"{t}\""))?,
        _ => JWT_DEFAULT_TTL,
    };
    let method = opts.get("sign-method").copied().unwrap_or("");
    let algorithm = Algorithm::from_str(method).map_err(|_| "auth: invalid auth signature method".to_owned())?;
    let read = |k: &str| -> Result<Option<Vec<u8>>, String> {
        match opts.get(k) {
            Some(path) if !path.is_empty() => std::fs::read(path).map(Some).map_err(|e| format!("open {path}: {e}")),
            _ => Ok(None),
        }
    };
    let (public, private) = (read("pub-key")?, read("priv-key")?);
    let bad_key = |e: jsonwebtoken::errors::Error| format!("auth: invalid key: {e}");
    let (signing, verifying) = match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            let secret = private.ok_or("auth: missing key data")?;
            (Some(EncodingKey::from_secret(&secret)), DecodingKey::from_secret(&secret))
        }
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => {
            let signing = private.as_deref().map(EncodingKey::from_rsa_pem).transpose().map_err(bad_key)?;
            let public = public.ok_or("auth: missing key data")?;
            (signing, DecodingKey::from_rsa_pem(&public).map_err(bad_key)?)
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            let signing = private.as_deref().map(EncodingKey::from_ec_pem).transpose().map_err(bad_key)?;
            let public = public.ok_or("auth: missing key data")?;
            (signing, DecodingKey::from_ec_pem(&public).map_err(bad_key)?)
        }
        Algorithm::EdDSA => return Err("auth: invalid auth signature method".into()),
    };
    Ok(Jwt { algorithm, signing, verifying, ttl })
}

/// Go's time.ParseDuration for the units a token TTL uses.
fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_tokens_expire_unless_used_and_die_with_their_user() {
        let t = Tokens::simple(Duration::from_millis(50));
        let token = t.assign_simple("abc", 7, "u").unwrap();
        assert_eq!(token, "abc.7");
        assert_eq!(t.info(&token, 3), Some(AuthInfo { username: "u".into(), revision: 3 }));
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(t.info(&token, 3), None);
        let token = t.assign_simple("def", 8, "u").unwrap();
        t.invalidate_user("u");
        assert_eq!(t.info(&token, 3), None);
    }

    #[test]
    fn prefixes_are_sixteen_letters() {
        let p = Tokens::gen_prefix();
        assert_eq!(p.len(), 16);
        assert!(p.chars().all(|c| c.is_ascii_alphabetic()));
        assert_ne!(p, Tokens::gen_prefix());
    }

    #[test]
    fn flags_parse_as_etcds() {
        assert!(Tokens::from_flag("simple", Duration::from_mins(5)).is_ok());
        assert_eq!(Tokens::from_flag("bogus", Duration::ZERO).unwrap_err(), "auth: invalid auth options");
        assert_eq!(Tokens::from_flag("jwt,a", Duration::ZERO).unwrap_err(), "auth: invalid auth options");
        assert_eq!(
            Tokens::from_flag("jwt,sign-method=XX256", Duration::ZERO).unwrap_err(),
            "auth: invalid auth signature method"
        );
        assert_eq!(parse_go_duration("5m"), Some(Duration::from_mins(5)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_mins(90)));
        assert_eq!(parse_go_duration("10"), None);
    }

    #[test]
    fn hmac_jwt_round_trips_and_a_forged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, b"secret").unwrap();
        let flag = format!("jwt,priv-key={},sign-method=HS256,ttl=1m", key.display());
        let t = Tokens::from_flag(&flag, Duration::ZERO).unwrap();
        let token = t.sign_jwt("u", 4).unwrap();
        assert_eq!(t.info(&token, 9), Some(AuthInfo { username: "u".into(), revision: 4 }));
        std::fs::write(&key, b"other").unwrap();
        let other = Tokens::from_flag(&flag, Duration::ZERO).unwrap();
        assert_eq!(other.info(&token, 9), None);
    }
}
