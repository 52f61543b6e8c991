//! Provider presets for `postern setup`: where each provider's SMTP relay
//! is, which ports and TLS modes it offers, the user name it expects, and
//! what the user should know (app passwords, retired Basic AUTH).

use crate::config::TlsMode;

/// A provider `postern setup` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// SendGrid: user "apikey", the API key as the secret.
    SendGrid,
    /// Mailgun SMTP (US or EU region).
    Mailgun,
    /// Amazon SES: the region's SMTP endpoint, SMTP credentials.
    Ses,
    /// Google Workspace / Gmail with an app password.
    Google,
    /// Microsoft 365 (Exchange Online) SMTP AUTH.
    Microsoft365,
    /// Postmark: the server token as user name and password.
    Postmark,
    /// Any SMTP relay: host, port, TLS mode, user.
    Generic,
}

/// Every provider, in the order the interactive menu lists them.
pub const ALL: [Provider; 7] = [
    Provider::SendGrid,
    Provider::Mailgun,
    Provider::Ses,
    Provider::Google,
    Provider::Microsoft365,
    Provider::Postmark,
    Provider::Generic,
];

impl Provider {
    /// The provider named `s` (`--provider`): case-insensitive, with a few
    /// common spellings.
    pub fn from_name(s: &str) -> Option<Provider> {
        Some(match s.to_ascii_lowercase().as_str() {
            "sendgrid" => Provider::SendGrid,
            "mailgun" => Provider::Mailgun,
            "ses" | "amazon-ses" | "aws-ses" | "amazon" => Provider::Ses,
            "google" | "gmail" | "google-workspace" => Provider::Google,
            "microsoft365" | "microsoft-365" | "m365" | "office365" | "o365" | "outlook" => {
                Provider::Microsoft365
            }
            "postmark" => Provider::Postmark,
            "generic" | "other" | "smtp" => Provider::Generic,
            _ => return None,
        })
    }

    /// The name written in the config comment and accepted by `--provider`.
    pub fn name(self) -> &'static str {
        match self {
            Provider::SendGrid => "sendgrid",
            Provider::Mailgun => "mailgun",
            Provider::Ses => "ses",
            Provider::Google => "google",
            Provider::Microsoft365 => "microsoft365",
            Provider::Postmark => "postmark",
            Provider::Generic => "generic",
        }
    }

    /// A human label for the menu.
    pub fn label(self) -> &'static str {
        match self {
            Provider::SendGrid => "SendGrid (API key)",
            Provider::Mailgun => "Mailgun (SMTP credentials)",
            Provider::Ses => "Amazon SES (SMTP credentials)",
            Provider::Google => "Google Workspace / Gmail (app password)",
            Provider::Microsoft365 => "Microsoft 365 (SMTP AUTH)",
            Provider::Postmark => "Postmark (server token)",
            Provider::Generic => "another SMTP relay (host, port, TLS, user)",
        }
    }

    /// The relay host; `region` is the SES region or the Mailgun region
    /// ("us" or "eu"). None for the generic preset (the user names it).
    pub fn host(self, region: Option<&str>) -> Option<String> {
        Some(match self {
            Provider::SendGrid => "smtp.sendgrid.net".into(),
            Provider::Mailgun => match region.map(str::to_ascii_lowercase).as_deref() {
                Some("eu") => "smtp.eu.mailgun.org".into(),
                _ => "smtp.mailgun.org".into(),
            },
            Provider::Ses => format!(
                "email-smtp.{}.amazonaws.com",
                region.unwrap_or(DEFAULT_SES_REGION)
            ),
            Provider::Google => "smtp.gmail.com".into(),
            Provider::Microsoft365 => "smtp.office365.com".into(),
            Provider::Postmark => "smtp.postmarkapp.com".into(),
            Provider::Generic => return None,
        })
    }

    /// Does this preset ask for a region, and which is the default?
    pub fn region(self) -> Option<(&'static str, &'static str)> {
        match self {
            Provider::Ses => Some((
                "AWS region of your SES account (e.g. us-east-1, eu-west-1)",
                DEFAULT_SES_REGION,
            )),
            Provider::Mailgun => Some(("Mailgun region (us or eu)", "us")),
            _ => None,
        }
    }

    /// The ports the provider offers, the first one the default.
    pub fn ports(self) -> &'static [u16] {
        match self {
            Provider::SendGrid => &[587, 465, 2525],
            Provider::Mailgun => &[587, 465, 2525],
            Provider::Ses => &[587, 465, 2587],
            Provider::Google => &[587, 465],
            Provider::Microsoft365 => &[587],
            Provider::Postmark => &[587, 2525],
            Provider::Generic => &[587, 465, 25],
        }
    }

    /// The fixed user name, if the provider has one (SendGrid's "apikey").
    pub fn fixed_user(self) -> Option<&'static str> {
        match self {
            Provider::SendGrid => Some("apikey"),
            _ => None,
        }
    }

    /// What the user name is, for the prompt.
    pub fn user_hint(self) -> &'static str {
        match self {
            Provider::SendGrid => "always \"apikey\"",
            Provider::Mailgun => "the SMTP login, e.g. postmaster@mg.example.com",
            Provider::Ses => "the SMTP user name from the SES console (not your AWS access key)",
            Provider::Google => "your full Google address",
            Provider::Microsoft365 => "the mailbox address",
            Provider::Postmark => {
                "empty: the server token is both user name and password (or an SMTP token's access key)"
            }
            Provider::Generic => "empty for a relay without AUTH",
        }
    }

    /// What the secret is, for the prompt.
    pub fn secret_hint(self) -> &'static str {
        match self {
            Provider::SendGrid => "the SendGrid API key",
            Provider::Mailgun => "the SMTP password",
            Provider::Ses => "the SES SMTP password",
            Provider::Google => "an app password (16 letters)",
            Provider::Microsoft365 => "the mailbox password",
            Provider::Postmark => "the server API token (or the SMTP token's secret key)",
            Provider::Generic => "the password",
        }
    }

    /// What the user must know before using this preset (shown in both
    /// modes).
    pub fn notes(self) -> &'static [&'static str] {
        match self {
            Provider::Google => &[
                "Google: OAuth2 (XOAUTH2 with a refreshed token) is not supported by postern setup yet; use an app password (Google account > Security > 2-Step Verification > App passwords).",
            ],
            Provider::Microsoft365 => &[
                "Microsoft 365: Microsoft is retiring Basic AUTH (user name and password) for SMTP AUTH; OAuth2 support in postern is coming. Until then SMTP AUTH must be enabled for the mailbox.",
            ],
            Provider::Postmark => &[
                "Postmark: with the server token as the user name, the token is also in the (world-readable) config file; an SMTP token (access key as the user name, secret key as the password) keeps the user name harmless.",
            ],
            Provider::Ses => &[
                "Amazon SES: use the SMTP credentials created in the SES console (SMTP settings), and a verified sender address (--from).",
            ],
            _ => &[],
        }
    }
}

/// The SES region assumed when none is given.
pub const DEFAULT_SES_REGION: &str = "us-east-1";

/// The TLS mode for `port` when the user did not say: implicit TLS on
/// 465, STARTTLS elsewhere.
pub fn tls_for_port(port: u16) -> TlsMode {
    if port == 465 {
        TlsMode::Tls
    } else {
        TlsMode::Starttls
    }
}

/// A TLS mode's name in the config.
pub fn tls_name(t: TlsMode) -> &'static str {
    match t {
        TlsMode::Starttls => "starttls",
        TlsMode::Tls => "tls",
        TlsMode::None => "none",
    }
}

/// Is `r` a plausible AWS region name (letters, digits, dashes)?
pub fn valid_region(r: &str) -> bool {
    !r.is_empty()
        && r.len() < 40
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_name_the_providers_relays() {
        assert_eq!(
            Provider::SendGrid.host(None).as_deref(),
            Some("smtp.sendgrid.net")
        );
        assert_eq!(Provider::SendGrid.ports(), &[587, 465, 2525]);
        assert_eq!(Provider::SendGrid.fixed_user(), Some("apikey"));
        assert_eq!(
            Provider::Mailgun.host(Some("EU")).as_deref(),
            Some("smtp.eu.mailgun.org")
        );
        assert_eq!(
            Provider::Ses.host(Some("eu-west-1")).as_deref(),
            Some("email-smtp.eu-west-1.amazonaws.com")
        );
        assert_eq!(
            Provider::Google.host(None).as_deref(),
            Some("smtp.gmail.com")
        );
        assert_eq!(
            Provider::Microsoft365.host(None).as_deref(),
            Some("smtp.office365.com")
        );
        assert_eq!(
            Provider::Postmark.host(None).as_deref(),
            Some("smtp.postmarkapp.com")
        );
        assert_eq!(Provider::Generic.host(None), None);
        for p in ALL {
            assert_eq!(Provider::from_name(p.name()), Some(p));
        }
        assert_eq!(tls_for_port(465), TlsMode::Tls);
        assert_eq!(tls_for_port(2525), TlsMode::Starttls);
        assert!(valid_region("eu-west-1") && !valid_region("x.evil.com"));
    }
}
