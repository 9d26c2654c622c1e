//! AWS Signature Version 4, header form, as the AWS SDKs sign S3 Control
//! requests: the server rebuilds the canonical request from what it
//! received, signs it with the secret of the access key the request names,
//! and compares. Requests more than 15 minutes from the server's clock are
//! refused, and a body whose SHA-256 is not the one signed is refused.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// How far a request's time may be from the server's.
pub const MAX_SKEW: TimeDelta = TimeDelta::minutes(15);

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const UNSIGNED: &str = "UNSIGNED-PAYLOAD";

/// A received request, as far as its signature covers it.
#[derive(Debug)]
pub struct Request<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The path as sent (percent-encoded).
    pub path: &'a str,
    /// The query string as sent, without `?`.
    pub query: &'a str,
    /// Every header, names in any case.
    pub headers: &'a http::HeaderMap,
    /// The body.
    pub body: &'a [u8],
}

/// Why a signature is refused; each has S3's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Authorization` header.
    #[error("the request is not signed; an AWS Signature Version 4 is required")]
    Missing,
    /// The header is not SigV4's.
    #[error("the Authorization header is malformed: {0}")]
    Malformed(String),
    /// The access key is not one the server knows.
    #[error("the AWS access key id you provided does not exist in our records")]
    UnknownKey,
    /// The signature does not match.
    #[error("the request signature we calculated does not match the signature you provided")]
    Mismatch,
    /// The request's time is too far from the server's.
    #[error("the difference between the request time and the server's time is too large")]
    Skewed,
    /// The body's hash is not the signed one.
    #[error("the provided x-amz-content-sha256 header does not match what was computed")]
    BodyMismatch,
}

impl SignatureError {
    /// The error code S3 answers with.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Missing => "AccessDenied",
            SignatureError::Malformed(_) => "AuthorizationHeaderMalformed",
            SignatureError::UnknownKey => "InvalidAccessKeyId",
            SignatureError::Mismatch => "SignatureDoesNotMatch",
            SignatureError::Skewed => "RequestTimeTooSkewed",
            SignatureError::BodyMismatch => "XAmzContentSHA256Mismatch",
        }
    }

    /// The HTTP status S3 answers with.
    pub fn status(&self) -> u16 {
        match self {
            SignatureError::Malformed(_) | SignatureError::BodyMismatch => 400,
            _ => 403,
        }
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
struct Authorization<'a> {
    key_id: &'a str,
    date: &'a str,
    scope: String,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, SignatureError> {
    let malformed = |why: &str| SignatureError::Malformed(why.to_owned());
    let rest = value
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| malformed("the algorithm must be AWS4-HMAC-SHA256"))?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(value) = part.strip_prefix("Credential=") {
            credential = Some(value);
        } else if let Some(value) = part.strip_prefix("SignedHeaders=") {
            signed = Some(value);
        } else if let Some(value) = part.strip_prefix("Signature=") {
            signature = Some(value);
        }
    }
    let credential = credential.ok_or_else(|| malformed("no Credential"))?;
    let mut pieces = credential.splitn(5, '/');
    let (Some(key_id), Some(date), Some(region), Some(service), Some(terminal)) = (
        pieces.next(),
        pieces.next(),
        pieces.next(),
        pieces.next(),
        pieces.next(),
    ) else {
        return Err(malformed(
            "the Credential must be KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    };
    if terminal != "aws4_request" || date.len() != 8 {
        return Err(malformed(
            "the Credential must be KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    }
    let signed_headers: Vec<&str> = signed
        .ok_or_else(|| malformed("no SignedHeaders"))?
        .split(';')
        .collect();
    if !signed_headers.contains(&"host") {
        return Err(malformed("the host header must be signed"));
    }
    Ok(Authorization {
        key_id,
        date,
        scope: format!("{date}/{region}/{service}/aws4_request"),
        signed_headers,
        signature: signature.ok_or_else(|| malformed("no Signature"))?,
    })
}

/// Verifies `request`'s signature with the secret `secret_of` gives for its
/// access key; returns the access key id.
pub fn verify<'a>(
    request: &Request<'a>,
    secret_of: impl Fn(&str) -> Option<String>,
    now: DateTime<Utc>,
) -> Result<String, SignatureError> {
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let authorization =
        parse_authorization(header("authorization").ok_or(SignatureError::Missing)?)?;
    let amz_date = header("x-amz-date")
        .ok_or_else(|| SignatureError::Malformed("no x-amz-date header".into()))?;
    let time = NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| SignatureError::Malformed("x-amz-date is not YYYYMMDDTHHMMSSZ".into()))?
        .and_utc();
    if !amz_date.starts_with(authorization.date) {
        return Err(SignatureError::Malformed(
            "the credential's date is not the request's".into(),
        ));
    }
    if (now - time).abs() > MAX_SKEW {
        return Err(SignatureError::Skewed);
    }
    let secret = secret_of(authorization.key_id).ok_or(SignatureError::UnknownKey)?;
    let body_hash = hex::encode(Sha256::digest(request.body));
    let payload = match header("x-amz-content-sha256") {
        Some(UNSIGNED) => UNSIGNED.to_owned(),
        Some(claimed) if claimed.eq_ignore_ascii_case(&body_hash) => claimed.to_owned(),
        Some(_) => return Err(SignatureError::BodyMismatch),
        None => body_hash,
    };
    let canonical = canonical_request(request, &authorization.signed_headers, &payload);
    let to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        authorization.scope,
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = signing_key(&secret, &authorization.scope);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(to_sign.as_bytes());
    let signature = hex::decode(authorization.signature).map_err(|_| SignatureError::Mismatch)?;
    mac.verify_slice(&signature)
        .map_err(|_| SignatureError::Mismatch)?;
    Ok(authorization.key_id.to_owned())
}

/// The key that signs: HMACs of the secret with the scope's date, region,
/// service and `aws4_request`.
fn signing_key(secret: &str, scope: &str) -> Vec<u8> {
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in scope.split('/') {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(part.as_bytes());
        key = mac.finalize().into_bytes().to_vec();
    }
    key
}

/// SigV4's canonical request. S3 signs the path as sent (not normalised,
/// not encoded again).
fn canonical_request(request: &Request<'_>, signed: &[&str], payload: &str) -> String {
    let mut headers = String::new();
    for name in signed {
        let values: Vec<String> = request
            .headers
            .get_all(*name)
            .iter()
            .map(|value| {
                String::from_utf8_lossy(value.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        headers.push_str(name);
        headers.push(':');
        headers.push_str(&values.join(","));
        headers.push('\n');
    }
    let path = if request.path.is_empty() {
        "/"
    } else {
        request.path
    };
    format!(
        "{}\n{path}\n{}\n{headers}\n{}\n{payload}",
        request.method,
        canonical_query(request.query),
        signed.join(";")
    )
}

/// The query's pairs, decoded, encoded again as SigV4 says and sorted.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (encode(&decode(key)), encode(&decode(value)))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Everything but unreserved characters percent-encoded, upper-case hex.
fn encode(text: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(text, KEEP).to_string()
}

/// Signs a request the way the SDKs do (for tests and for clients of our
/// own); returns the headers to add.
pub fn sign(
    request: &Request<'_>,
    key_id: &str,
    secret: &str,
    region: &str,
    now: DateTime<Utc>,
) -> Vec<(String, String)> {
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let scope = format!("{}/{region}/s3/aws4_request", &amz_date[..8]);
    let payload = hex::encode(Sha256::digest(request.body));
    let mut headers = request.headers.clone();
    let set = |headers: &mut http::HeaderMap, name: &'static str, value: &str| {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set(&mut headers, "x-amz-date", &amz_date);
    set(&mut headers, "x-amz-content-sha256", &payload);
    let mut signed: Vec<&str> = headers.keys().map(|name| name.as_str()).collect();
    signed.sort_unstable();
    let signed_request = Request {
        headers: &headers,
        ..*request
    };
    let canonical = canonical_request(&signed_request, &signed, &payload);
    let to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&signing_key(secret, &scope))
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(to_sign.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    vec![
        ("x-amz-date".into(), amz_date),
        ("x-amz-content-sha256".into(), payload),
        (
            "authorization".into(),
            format!(
                "{ALGORITHM} Credential={key_id}/{scope}, SignedHeaders={}, Signature={signature}",
                signed.join(";")
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of AWS's SigV4 documentation ("GET object" of the S3
    /// signing examples): its secret, request and signature.
    #[test]
    fn aws_documented_example_verifies() {
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "examplebucket.s3.amazonaws.com".parse().unwrap());
        headers.insert("range", "bytes=0-9".parse().unwrap());
        headers.insert(
            "x-amz-content-sha256",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                .parse()
                .unwrap(),
        );
        headers.insert("x-amz-date", "20130524T000000Z".parse().unwrap());
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
                .parse()
                .unwrap(),
        );
        let request = Request {
            method: "GET",
            path: "/test.txt",
            query: "",
            headers: &headers,
            body: b"",
        };
        let secret = |key: &str| {
            (key == "AKIAIOSFODNN7EXAMPLE")
                .then(|| "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned())
        };
        let now = DateTime::parse_from_rfc3339("2013-05-24T00:05:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            verify(&request, secret, now).unwrap(),
            "AKIAIOSFODNN7EXAMPLE"
        );
        let wrong = |_: &str| Some("another secret".to_owned());
        assert_eq!(verify(&request, wrong, now), Err(SignatureError::Mismatch));
        let later = now + TimeDelta::minutes(20);
        assert_eq!(verify(&request, secret, later), Err(SignatureError::Skewed));
        assert_eq!(
            verify(&request, |_| None, now),
            Err(SignatureError::UnknownKey)
        );
    }

    #[test]
    fn signed_requests_verify_and_tampered_ones_do_not() {
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "111122223333.batchops.internal".parse().unwrap());
        headers.insert("x-amz-account-id", "111122223333".parse().unwrap());
        let body = b"<CreateJobRequest/>";
        let unsigned = headers.clone();
        let request = Request {
            method: "POST",
            path: "/v20180820/jobs",
            query: "a=1&b=two%20words",
            headers: &unsigned,
            body,
        };
        let now = Utc::now();
        for (name, value) in sign(&request, "AKID", "secret", "us-east-1", now) {
            headers.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let signed = Request {
            headers: &headers,
            ..request
        };
        let secret = |_: &str| Some("secret".to_owned());
        assert_eq!(verify(&signed, secret, now).unwrap(), "AKID");
        let tampered = Request {
            body: b"<CreateJobRequest>x</CreateJobRequest>",
            ..signed
        };
        assert_eq!(
            verify(&tampered, secret, now),
            Err(SignatureError::BodyMismatch)
        );
        let other_query = Request {
            query: "a=2&b=two%20words",
            ..signed
        };
        assert_eq!(
            verify(&other_query, secret, now),
            Err(SignatureError::Mismatch)
        );
    }
}
