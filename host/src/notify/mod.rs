//! Outbound notifications other than SMS: e-mail ([`email`]), and
//! voicemail to e-mail with its MP3 ([`voicemail_mail`], [`mp3`]).

pub mod email;
pub mod mp3;
pub mod voicemail_mail;
