//! AWS Signature Version 4 (the `AWS4-HMAC-SHA256` scheme) for the SES
//! transport: the canonical request, the string to sign, the signing key
//! derived from the secret access key, and the `Authorization` header.
//! Only what a POST with signed headers and a payload hash needs (no query
//! string, no session token); SHA-256 and HMAC from ring.
//!
//! Checked against AWS's published Signature Version 4 test suite
//! (`get-vanilla`, `post-vanilla`, `post-x-www-form-urlencoded`): each
//! case's canonical request, string to sign and signature.

use ring::{digest, hmac};

/// Lower-case hex of `b`.
pub fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(H[usize::from(x >> 4)] as char);
        s.push(H[usize::from(x & 15)] as char);
    }
    s
}

/// Hex SHA-256 of `b`.
pub fn sha256_hex(b: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, b).as_ref())
}

/// What signs one request.
pub struct Signer<'a> {
    /// Access key id.
    pub access_key: &'a str,
    /// Secret access key.
    pub secret: &'a str,
    /// Region (`us-east-1`).
    pub region: &'a str,
    /// Service (`ses`).
    pub service: &'a str,
}

/// A signed request's pieces (kept for tests and debugging).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The canonical request.
    pub canonical_request: String,
    /// The string to sign.
    pub string_to_sign: String,
    /// The hex signature.
    pub signature: String,
    /// The `Authorization` header's value.
    pub authorization: String,
}

impl Signer<'_> {
    /// Sign `method path` (no query) with `headers` (name, value; every
    /// one is signed; `host` and `x-amz-date` must be among them) and the
    /// hex SHA-256 of the payload, at `amz_date` (`20150830T123600Z`).
    pub fn sign(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        payload_hash: &str,
        amz_date: &str,
    ) -> Signed {
        let mut hs: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| {
                let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
                (n.to_ascii_lowercase(), v)
            })
            .collect();
        hs.sort();
        let signed_headers = hs
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let mut canonical_request = format!("{method}\n{path}\n\n");
        for (n, v) in &hs {
            canonical_request.push_str(&format!("{n}:{v}\n"));
        }
        canonical_request.push_str(&format!("\n{signed_headers}\n{payload_hash}"));
        let date = amz_date.get(..8).unwrap_or(amz_date);
        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            sha256_hex(canonical_request.as_bytes())
        );
        let mut key = format!("AWS4{}", self.secret).into_bytes();
        for part in [date, self.region, self.service, "aws4_request"] {
            let k = hmac::Key::new(hmac::HMAC_SHA256, &key);
            key = hmac::sign(&k, part.as_bytes()).as_ref().to_vec();
        }
        let k = hmac::Key::new(hmac::HMAC_SHA256, &key);
        let signature = hex(hmac::sign(&k, string_to_sign.as_bytes()).as_ref());
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key
        );
        Signed {
            canonical_request,
            string_to_sign,
            signature,
            authorization,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // AWS Signature Version 4 test suite: the credentials, date, region
    // and service every case uses.
    const SUITE: Signer<'static> = Signer {
        access_key: "AKIDEXAMPLE",
        secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        region: "us-east-1",
        service: "service",
    };
    const DATE: &str = "20150830T123600Z";
    const HOST: &str = "example.amazonaws.com";

    #[test]
    fn get_vanilla() {
        let s = SUITE.sign(
            "GET",
            "/",
            &[("Host", HOST), ("X-Amz-Date", DATE)],
            &sha256_hex(b""),
            DATE,
        );
        assert_eq!(
            s.canonical_request,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            s.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        assert_eq!(
            s.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn post_vanilla() {
        let s = SUITE.sign(
            "POST",
            "/",
            &[("Host", HOST), ("X-Amz-Date", DATE)],
            &sha256_hex(b""),
            DATE,
        );
        assert_eq!(
            s.canonical_request,
            "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            s.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87"
        );
        assert_eq!(
            s.signature,
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        );
    }

    /// The suite's only case with a body. Its published `.creq` lists a
    /// `content-length` header that its `.sts` and `.authz` do not sign
    /// (the hash in the `.sts` is that of the request below, signed with
    /// `content-type;host;x-amz-date` as the `.authz` says).
    #[test]
    fn post_x_www_form_urlencoded() {
        let s = SUITE.sign(
            "POST",
            "/",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Host", HOST),
                ("X-Amz-Date", DATE),
            ],
            &sha256_hex(b"Param1=value1"),
            DATE,
        );
        assert_eq!(
            s.canonical_request,
            "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
        );
        assert_eq!(
            s.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281"
        );
        assert_eq!(
            s.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
        );
    }
}
