//! SRTP and SRTCP for wishd's own egress path (RFC 3711, RFC 7714).
//!
//! str0m protects every packet it sends itself. wishd's direct egress (BENCHMARKS.md,
//! "Next") sends forwarded media without str0m's per-viewer send path, so it needs the same protection with the keys of the session's DTLS
//! handshake: [`crate::media::dtls`] hands over the exported keying material, this
//! module derives the session keys from it (RFC 3711 §4.3, the AES-CM PRF for all
//! three profiles) and protects RTP and RTCP, and unprotects the RTCP a viewer sends
//! back (for its NACKs and receiver reports).
//!
//! The ciphers are str0m's own (its crypto provider, aws-lc-rs), so a packet costs
//! what it costs inside str0m; the framing around them (key derivation, IVs, the
//! SRTCP trailer, the HMAC tag) is written here from the RFCs and pinned by their
//! test vectors.

use str0m::crypto::dtls::SrtpProfile;

use super::dtls::ExportedKeys;
use str0m::crypto::{
    AeadAes128Gcm, AeadAes128GcmCipher, AeadAes256GcmCipher, Aes128CmSha1_80,
    Aes128CmSha1_80Cipher, CryptoError, CryptoProvider, Sha1HmacProvider,
};

/// Why a packet could not be protected or unprotected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SrtpError {
    #[error("DTLS exported {got} bytes of keying material, {profile:?} needs {need}")]
    KeyingMaterial {
        profile: Profile,
        got: usize,
        need: usize,
    },
    #[error("SRTP profile {0:?} is not supported")]
    UnsupportedProfile(String),
    #[error("packet too short for SRTP ({0} bytes)")]
    TooShort(usize),
    #[error("authentication tag does not match")]
    Authentication,
    #[error("cipher failed: {0}")]
    Cipher(String),
}

/// The three protection profiles str0m's DTLS negotiates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `SRTP_AES128_CM_HMAC_SHA1_80` (RFC 5764).
    Aes128CmSha1_80,
    /// `SRTP_AEAD_AES_128_GCM` (RFC 7714).
    AeadAes128Gcm,
    /// `SRTP_AEAD_AES_256_GCM` (RFC 7714).
    AeadAes256Gcm,
}

impl Profile {
    /// The profile a DTLS handshake negotiated.
    pub(crate) fn from_dtls(p: SrtpProfile) -> Result<Self, SrtpError> {
        match p {
            SrtpProfile::AES128_CM_SHA1_80 => Ok(Self::Aes128CmSha1_80),
            SrtpProfile::AEAD_AES_128_GCM => Ok(Self::AeadAes128Gcm),
            SrtpProfile::AEAD_AES_256_GCM => Ok(Self::AeadAes256Gcm),
            other => Err(SrtpError::UnsupportedProfile(format!("{other:?}"))),
        }
    }

    /// Master (and session) key length.
    pub(crate) fn key_len(self) -> usize {
        match self {
            Self::Aes128CmSha1_80 | Self::AeadAes128Gcm => 16,
            Self::AeadAes256Gcm => 32,
        }
    }

    /// Master (and session) salt length.
    pub(crate) fn salt_len(self) -> usize {
        match self {
            Self::Aes128CmSha1_80 => Aes128CmSha1_80::SALT_LEN,
            Self::AeadAes128Gcm | Self::AeadAes256Gcm => AeadAes128Gcm::SALT_LEN,
        }
    }

    /// Bytes a protected RTP packet has beyond the plain one.
    pub(crate) fn rtp_overhead(self) -> usize {
        match self {
            Self::Aes128CmSha1_80 => Aes128CmSha1_80::HMAC_TAG_LEN,
            Self::AeadAes128Gcm | Self::AeadAes256Gcm => AeadAes128Gcm::TAG_LEN,
        }
    }

    #[cfg(test)]
    /// Bytes a protected RTCP packet has beyond the plain one (tag and index word).
    pub(crate) fn rtcp_overhead(self) -> usize {
        self.rtp_overhead() + 4
    }
}

/// One direction's master key and salt.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct MasterKey {
    pub(crate) profile: Profile,
    pub(crate) key: Vec<u8>,
    pub(crate) salt: Vec<u8>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key bytes stay out of logs.
        write!(f, "MasterKey({:?})", self.profile)
    }
}

/// The two directions of a DTLS-SRTP export: what we send with and what the peer
/// sends with (RFC 5764 §4.2: client key, server key, client salt, server salt).
pub(crate) fn split_export(
    profile: Profile,
    material: &[u8],
    dtls_client: bool,
) -> Result<(MasterKey, MasterKey), SrtpError> {
    let (k, s) = (profile.key_len(), profile.salt_len());
    let need = 2 * (k + s);
    if material.len() < need {
        return Err(SrtpError::KeyingMaterial {
            profile,
            got: material.len(),
            need,
        });
    }
    let client = MasterKey {
        profile,
        key: material[..k].to_vec(),
        salt: material[2 * k..2 * k + s].to_vec(),
    };
    let server = MasterKey {
        profile,
        key: material[k..2 * k].to_vec(),
        salt: material[2 * k + s..need].to_vec(),
    };
    Ok(if dtls_client {
        (client, server)
    } else {
        (server, client)
    })
}

/// The two contexts of a session from its DTLS export: ours to protect what we send,
/// the peer's to read what it sends.
pub fn contexts(provider: &CryptoProvider, keys: &ExportedKeys) -> Result<(Srtp, Srtp), SrtpError> {
    let profile = Profile::from_dtls(keys.profile)?;
    let (local, remote) = split_export(profile, &keys.material, keys.dtls_client)?;
    Ok((
        Srtp::new(provider, &local, true)?,
        Srtp::new(provider, &remote, false)?,
    ))
}

/// RFC 3711 §4.3.1 key derivation with a key derivation rate of zero: the AES-CM
/// keystream of the master key at IV `(master_salt XOR label << 48) << 16`. A 12-byte
/// (GCM) salt sits in the top of the 14-byte field, as RFC 7714 §11 has it.
fn derive(
    provider: &CryptoProvider,
    master: &MasterKey,
    label: u8,
    out: &mut [u8],
) -> Result<(), SrtpError> {
    let mut x = [0u8; 16];
    let salt_len = master.salt.len().min(14);
    x[..salt_len].copy_from_slice(&master.salt[..salt_len]);
    x[7] ^= label;
    let srtp = provider.srtp_provider;
    for (i, chunk) in out.chunks_mut(16).enumerate() {
        let mut block = x;
        block[14..16].copy_from_slice(&(i as u16).to_be_bytes());
        let mut ks = [0u8; 16];
        match master.key.len() {
            16 => srtp.srtp_aes_128_ecb_round(&master.key, &block, &mut ks),
            32 => srtp.srtp_aes_256_ecb_round(&master.key, &block, &mut ks),
            n => return Err(SrtpError::Cipher(format!("{n}-byte master key"))),
        }
        chunk.copy_from_slice(&ks[..chunk.len()]);
    }
    Ok(())
}

/// Labels of RFC 3711 §4.3.2.
const LABEL_RTP_ENCRYPTION: u8 = 0;
const LABEL_RTP_AUTH: u8 = 1;
const LABEL_RTP_SALT: u8 = 2;
const LABEL_RTCP_ENCRYPTION: u8 = 3;
const LABEL_RTCP_AUTH: u8 = 4;
const LABEL_RTCP_SALT: u8 = 5;

/// The cipher of one direction and one of RTP or RTCP, with its session keys.
enum Cipher {
    Cm {
        cipher: Box<dyn Aes128CmSha1_80Cipher>,
        auth: [u8; 20],
        salt: [u8; 14],
        hmac: &'static dyn Sha1HmacProvider,
    },
    /// Either key size: RFC 7714 forms the IV and the AAD the same way for both.
    Gcm {
        cipher: Box<dyn Gcm>,
        salt: [u8; 12],
    },
}

/// AES-GCM of either key size behind one face (str0m has a trait for each).
trait Gcm: Send + Sync {
    fn seal(
        &mut self,
        iv: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        out: &mut [u8],
    ) -> Result<(), CryptoError>;
    fn open(
        &mut self,
        iv: &[u8; 12],
        aads: &[&[u8]],
        input: &[u8],
        out: &mut [u8],
    ) -> Result<usize, CryptoError>;
}

macro_rules! gcm_for {
    ($t:ty) => {
        impl Gcm for Box<$t> {
            fn seal(
                &mut self,
                iv: &[u8; 12],
                aad: &[u8],
                input: &[u8],
                out: &mut [u8],
            ) -> Result<(), CryptoError> {
                self.encrypt(iv, aad, input, out)
            }
            fn open(
                &mut self,
                iv: &[u8; 12],
                aads: &[&[u8]],
                input: &[u8],
                out: &mut [u8],
            ) -> Result<usize, CryptoError> {
                self.decrypt(iv, aads, input, out)
            }
        }
    };
}
gcm_for!(dyn AeadAes128GcmCipher);
gcm_for!(dyn AeadAes256GcmCipher);

impl Cipher {
    fn new(
        provider: &CryptoProvider,
        master: &MasterKey,
        labels: [u8; 3],
        encrypt: bool,
    ) -> Result<Self, SrtpError> {
        let [enc_label, auth_label, salt_label] = labels;
        let srtp = provider.srtp_provider;
        Ok(match master.profile {
            Profile::Aes128CmSha1_80 => {
                let (mut key, mut auth, mut salt) = ([0u8; 16], [0u8; 20], [0u8; 14]);
                derive(provider, master, enc_label, &mut key)?;
                derive(provider, master, auth_label, &mut auth)?;
                derive(provider, master, salt_label, &mut salt)?;
                Cipher::Cm {
                    cipher: srtp.aes_128_cm_sha1_80().create_cipher(key, encrypt),
                    auth,
                    salt,
                    hmac: provider.sha1_hmac_provider,
                }
            }
            Profile::AeadAes128Gcm => {
                let (mut key, mut salt) = ([0u8; 16], [0u8; 12]);
                derive(provider, master, enc_label, &mut key)?;
                derive(provider, master, salt_label, &mut salt)?;
                Cipher::Gcm {
                    cipher: Box::new(srtp.aead_aes_128_gcm().create_cipher(key, encrypt)),
                    salt,
                }
            }
            Profile::AeadAes256Gcm => {
                let (mut key, mut salt) = ([0u8; 32], [0u8; 12]);
                derive(provider, master, enc_label, &mut key)?;
                derive(provider, master, salt_label, &mut salt)?;
                Cipher::Gcm {
                    cipher: Box::new(srtp.aead_aes_256_gcm().create_cipher(key, encrypt)),
                    salt,
                }
            }
        })
    }

    /// A cipher built from session keys directly (the RFC 7714 vectors give those).
    #[cfg(test)]
    fn from_session(
        provider: &CryptoProvider,
        profile: Profile,
        key: &[u8],
        salt: &[u8],
        encrypt: bool,
    ) -> Self {
        let srtp = provider.srtp_provider;
        match profile {
            Profile::AeadAes128Gcm => Cipher::Gcm {
                cipher: Box::new(
                    srtp.aead_aes_128_gcm()
                        .create_cipher(key.try_into().unwrap(), encrypt),
                ),
                salt: salt.try_into().unwrap(),
            },
            Profile::AeadAes256Gcm => Cipher::Gcm {
                cipher: Box::new(
                    srtp.aead_aes_256_gcm()
                        .create_cipher(key.try_into().unwrap(), encrypt),
                ),
                salt: salt.try_into().unwrap(),
            },
            Profile::Aes128CmSha1_80 => unimplemented!("RFC 7714 vectors are GCM only"),
        }
    }
}

fn cipher_err(e: impl std::fmt::Display) -> SrtpError {
    SrtpError::Cipher(e.to_string())
}

fn ssrc_of(packet: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([packet[at], packet[at + 1], packet[at + 2], packet[at + 3]])
}

/// The SRTP context of one direction of one session: RTP and RTCP.
pub struct Srtp {
    profile: Profile,
    rtp: Cipher,
    rtcp: Cipher,
    /// The next SRTCP index we send (31 bits; RFC 3711 §3.4).
    srtcp_index: u32,
}

impl std::fmt::Debug for Srtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Srtp({:?})", self.profile)
    }
}

impl Srtp {
    /// The context for `master`: `encrypt` for what we send, not for what we read.
    pub(crate) fn new(
        provider: &CryptoProvider,
        master: &MasterKey,
        encrypt: bool,
    ) -> Result<Self, SrtpError> {
        Ok(Srtp {
            profile: master.profile,
            rtp: Cipher::new(
                provider,
                master,
                [LABEL_RTP_ENCRYPTION, LABEL_RTP_AUTH, LABEL_RTP_SALT],
                encrypt,
            )?,
            rtcp: Cipher::new(
                provider,
                master,
                [LABEL_RTCP_ENCRYPTION, LABEL_RTCP_AUTH, LABEL_RTCP_SALT],
                encrypt,
            )?,
            srtcp_index: 1,
        })
    }

    /// Appends the protected form of the RTP packet `header` + `payload` to `out`.
    /// `roc` is the rollover counter of the packet's sequence number (the sender
    /// keeps it: the index is `roc << 16 | seq`).
    pub(crate) fn protect_rtp(
        &mut self,
        header: &[u8],
        payload: &[u8],
        roc: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), SrtpError> {
        if header.len() < 12 {
            return Err(SrtpError::TooShort(header.len()));
        }
        let ssrc = ssrc_of(header, 8);
        let seq = u16::from_be_bytes([header[2], header[3]]);
        let start = out.len();
        out.extend_from_slice(header);
        let body = out.len();
        out.resize(body + payload.len() + self.profile.rtp_overhead(), 0);
        match &mut self.rtp {
            Cipher::Cm {
                cipher,
                auth,
                salt,
                hmac,
            } => {
                let index = (u64::from(roc) << 16) | u64::from(seq);
                let iv = Aes128CmSha1_80::rtp_iv(*salt, ssrc, index);
                cipher
                    .encrypt(&iv, payload, &mut out[body..body + payload.len()])
                    .map_err(cipher_err)?;
                let tag_at = body + payload.len() - start;
                Aes128CmSha1_80::rtp_hmac(
                    |k, d| hmac.sha1_hmac(k, d),
                    auth.as_slice(),
                    &mut out[start..],
                    index,
                    tag_at,
                );
            }
            Cipher::Gcm { cipher, salt } => {
                let iv = AeadAes128Gcm::rtp_iv(*salt, ssrc, roc, seq);
                let (aad, rest) = out[start..].split_at_mut(header.len());
                cipher.seal(&iv, aad, payload, rest).map_err(cipher_err)?;
            }
        }
        Ok(())
    }

    #[cfg(test)]
    /// The plain RTP packet of `packet`, whose header is `header_len` bytes long and
    /// whose rollover counter is `roc`. For tests and tools: a server reads no RTP
    /// through this path.
    pub(crate) fn unprotect_rtp(
        &mut self,
        packet: &[u8],
        header_len: usize,
        roc: u32,
    ) -> Result<Vec<u8>, SrtpError> {
        let tag = self.profile.rtp_overhead();
        if packet.len() < header_len + tag || header_len < 12 {
            return Err(SrtpError::TooShort(packet.len()));
        }
        let ssrc = ssrc_of(packet, 8);
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let mut out = packet[..header_len].to_vec();
        match &mut self.rtp {
            Cipher::Cm {
                cipher,
                auth,
                salt,
                hmac,
            } => {
                let index = (u64::from(roc) << 16) | u64::from(seq);
                let (signed, tag) = packet.split_at(packet.len() - tag);
                if !Aes128CmSha1_80::rtp_verify(
                    |k, d| hmac.sha1_hmac(k, d),
                    auth.as_slice(),
                    signed,
                    index,
                    tag,
                ) {
                    return Err(SrtpError::Authentication);
                }
                let iv = Aes128CmSha1_80::rtp_iv(*salt, ssrc, index);
                let body = &signed[header_len..];
                out.resize(header_len + body.len(), 0);
                cipher
                    .decrypt(&iv, body, &mut out[header_len..])
                    .map_err(cipher_err)?;
            }
            Cipher::Gcm { cipher, salt } => {
                let iv = AeadAes128Gcm::rtp_iv(*salt, ssrc, roc, seq);
                out.resize(packet.len(), 0);
                let n = cipher
                    .open(
                        &iv,
                        &[&packet[..header_len]],
                        &packet[header_len..],
                        &mut out[header_len..],
                    )
                    .map_err(|_| SrtpError::Authentication)?;
                out.truncate(header_len + n);
            }
        }
        Ok(out)
    }

    /// Appends the protected (encrypted) form of the compound RTCP packet `plain` to
    /// `out`, with the next SRTCP index.
    pub(crate) fn protect_rtcp(
        &mut self,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SrtpError> {
        if plain.len() < 8 {
            return Err(SrtpError::TooShort(plain.len()));
        }
        let index = self.srtcp_index;
        self.srtcp_index = (self.srtcp_index + 1) & 0x7fff_ffff;
        let ssrc = ssrc_of(plain, 4);
        let e_index = (index | 0x8000_0000).to_be_bytes();
        let start = out.len();
        out.extend_from_slice(&plain[..8]);
        let body = &plain[8..];
        let at = out.len();
        match &mut self.rtcp {
            Cipher::Cm {
                cipher,
                auth,
                salt,
                hmac,
            } => {
                out.resize(at + body.len(), 0);
                let iv = Aes128CmSha1_80::rtp_iv(*salt, ssrc, u64::from(index));
                cipher
                    .encrypt(&iv, body, &mut out[at..])
                    .map_err(cipher_err)?;
                out.extend_from_slice(&e_index);
                let tag_at = out.len() - start;
                out.resize(out.len() + Aes128CmSha1_80::HMAC_TAG_LEN, 0);
                Aes128CmSha1_80::rtcp_hmac(
                    |k, d| hmac.sha1_hmac(k, d),
                    auth.as_slice(),
                    &mut out[start..],
                    tag_at,
                );
            }
            Cipher::Gcm { cipher, salt } => {
                out.resize(at + body.len() + AeadAes128Gcm::TAG_LEN, 0);
                let iv = AeadAes128Gcm::rtcp_iv(*salt, ssrc, index);
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&plain[..8]);
                aad[8..].copy_from_slice(&e_index);
                cipher
                    .seal(&iv, &aad, body, &mut out[at..])
                    .map_err(cipher_err)?;
                out.extend_from_slice(&e_index);
            }
        }
        Ok(())
    }

    /// The plain compound RTCP packet of the SRTCP packet `packet`, and its index.
    /// Unencrypted SRTCP (E clear) is authenticated and returned as it is.
    pub(crate) fn unprotect_rtcp(&mut self, packet: &[u8]) -> Result<(Vec<u8>, u32), SrtpError> {
        let tag_len = self.profile.rtp_overhead();
        if packet.len() < 8 + 4 + tag_len {
            return Err(SrtpError::TooShort(packet.len()));
        }
        let ssrc = ssrc_of(packet, 4);
        match &mut self.rtcp {
            Cipher::Cm {
                cipher,
                auth,
                salt,
                hmac,
            } => {
                let (signed, tag) = packet.split_at(packet.len() - tag_len);
                if !Aes128CmSha1_80::rtcp_verify(
                    |k, d| hmac.sha1_hmac(k, d),
                    auth.as_slice(),
                    signed,
                    tag,
                ) {
                    return Err(SrtpError::Authentication);
                }
                let (rest, word) = signed.split_at(signed.len() - 4);
                let word = ssrc_of(word, 0);
                let index = word & 0x7fff_ffff;
                let mut out = rest.to_vec();
                if word & 0x8000_0000 != 0 {
                    let iv = Aes128CmSha1_80::rtp_iv(*salt, ssrc, u64::from(index));
                    cipher
                        .decrypt(&iv, &rest[8..], &mut out[8..])
                        .map_err(cipher_err)?;
                }
                Ok((out, index))
            }
            Cipher::Gcm { cipher, salt } => {
                let (rest, word) = packet.split_at(packet.len() - 4);
                let word_bytes: [u8; 4] = [word[0], word[1], word[2], word[3]];
                let word = u32::from_be_bytes(word_bytes);
                let index = word & 0x7fff_ffff;
                let iv = AeadAes128Gcm::rtcp_iv(*salt, ssrc, index);
                let mut out = vec![0u8; rest.len()];
                out[..8].copy_from_slice(&rest[..8]);
                let n = if word & 0x8000_0000 != 0 {
                    // AAD: the first 8 octets and the E|index word (RFC 7714 §9.1).
                    cipher
                        .open(&iv, &[&rest[..8], &word_bytes], &rest[8..], &mut out[8..])
                        .map_err(|_| SrtpError::Authentication)?
                } else {
                    // Authenticated only: the whole packet and the word are the AAD,
                    // the tag the "ciphertext" (RFC 7714 §9.2).
                    let body = rest.len() - tag_len;
                    cipher
                        .open(&iv, &[&rest[..body], &word_bytes], &rest[body..], &mut [])
                        .map_err(|_| SrtpError::Authentication)?;
                    out[8..body].copy_from_slice(&rest[8..body]);
                    body - 8
                };
                out.truncate(8 + n);
                Ok((out, index))
            }
        }
    }
}

#[cfg(test)]
mod tests;
