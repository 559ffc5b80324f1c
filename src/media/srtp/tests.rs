use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn provider() -> CryptoProvider {
    crate::media::dtls::provider()
}

/// A context from session keys (what the RFC 7714 vectors state), the same key and
/// salt for RTP and RTCP as in the RFC.
fn from_session(profile: Profile, key: &str, salt: &str, encrypt: bool) -> Srtp {
    let p = provider();
    let (key, salt) = (hex(key), hex(salt));
    Srtp {
        profile,
        rtp: Cipher::from_session(&p, profile, &key, &salt, encrypt),
        rtcp: Cipher::from_session(&p, profile, &key, &salt, encrypt),
        srtcp_index: 1,
    }
}

// RFC 3711 appendix B.3.
const B3_KEY: &str = "E1F97A0D3E018BE0D64FA32C06DE4139";
const B3_SALT: &str = "0EC675AD498AFEEBB6960B3AABE6";

#[test]
fn session_keys_derive_as_rfc_3711_appendix_b3_lists_them() {
    let master = MasterKey {
        profile: Profile::Aes128CmSha1_80,
        key: hex(B3_KEY),
        salt: hex(B3_SALT),
    };
    let p = provider();
    let mut key = [0u8; 16];
    let mut salt = [0u8; 14];
    let mut auth = [0u8; 20];
    derive(&p, &master, LABEL_RTP_ENCRYPTION, &mut key).unwrap();
    derive(&p, &master, LABEL_RTP_SALT, &mut salt).unwrap();
    derive(&p, &master, LABEL_RTP_AUTH, &mut auth).unwrap();
    assert_eq!(key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
    assert_eq!(salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
    assert_eq!(
        auth.to_vec(),
        hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
    );
}

// RFC 7714 section 16 and 17 (session keys and salt, "Quid pro quo").
const KEY_128: &str = "000102030405060708090a0b0c0d0e0f";
const KEY_256: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const SALT: &str = "517569642070726f2071756f";
const RTP: &str = "8040f17b8041f8d35501a0b247616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573";
const SRTP_128: &str = "8040f17b8041f8d35501a0b2f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a51c7d19b36de3adf8833899d7f27beb16a9152cf765ee4390cce";
const SRTP_256: &str = "8040f17b8041f8d35501a0b232b1de78a822fe12ef9f78fa332e33aab18012389a58e2f3b50b2a0276ffae0f1ba63799b87b7aa3db36dfffd6b0f9bb7878d7a76c13";
const RTCP: &str = "81c8000d4d6172734e5450314e545032525450200000042a0000e9304c756e61deadbeefdeadbeefdeadbeefdeadbeefdeadbeef";
const SRTCP_128: &str = "81c8000d4d61727363e94885dcdab67ca727d7662f6b7e997ff5c0f76c06f32dc676a5f1730d6fda4ce09b4686303ded0bb9275bc84aa45896cf4d2fc5abf87245d9eade800005d4";
const SRTCP_256: &str = "81c8000d4d617273d50ae4d1f5ce5d304ba297e47d470c282c3ece5dbffe0a50a2eaa5c1110555be8415f658c61de0476f1b6fad1d1eb30c4446839f57ff6f6cb26ac3be800005d4";
const SRTCP_128_TAG_ONLY: &str = "81c8000d4d6172734e5450314e545032525450200000042a0000e9304c756e61deadbeefdeadbeefdeadbeefdeadbeefdeadbeef841dd9683dd78ec92ae58790125f62b3000005d4";

#[test]
fn gcm_rtp_protects_as_rfc_7714_section_16_shows() {
    for (profile, key, expected) in [
        (Profile::AeadAes128Gcm, KEY_128, SRTP_128),
        (Profile::AeadAes256Gcm, KEY_256, SRTP_256),
    ] {
        let rtp = hex(RTP);
        let mut out = Vec::new();
        from_session(profile, key, SALT, true)
            .protect_rtp(&rtp[..12], &rtp[12..], 0, &mut out)
            .unwrap();
        assert_eq!(out, hex(expected), "{profile:?}");
        let back = from_session(profile, key, SALT, false)
            .unprotect_rtp(&out, 12, 0)
            .unwrap();
        assert_eq!(back, rtp, "{profile:?}");
    }
}

#[test]
fn gcm_rtcp_protects_and_unprotects_as_rfc_7714_section_17_shows() {
    for (profile, key, expected) in [
        (Profile::AeadAes128Gcm, KEY_128, SRTCP_128),
        (Profile::AeadAes256Gcm, KEY_256, SRTCP_256),
    ] {
        let mut sender = from_session(profile, key, SALT, true);
        sender.srtcp_index = 0x5d4;
        let mut out = Vec::new();
        sender.protect_rtcp(&hex(RTCP), &mut out).unwrap();
        assert_eq!(out, hex(expected), "{profile:?}");
        assert_eq!(sender.srtcp_index, 0x5d5, "the index counts up");
        let (plain, index) = from_session(profile, key, SALT, false)
            .unprotect_rtcp(&hex(expected))
            .unwrap();
        assert_eq!((plain, index), (hex(RTCP), 0x5d4), "{profile:?}");
    }
}

#[test]
fn authenticated_only_srtcp_is_read_as_rfc_7714_section_17_3_shows() {
    let (plain, index) = from_session(Profile::AeadAes128Gcm, KEY_128, SALT, false)
        .unprotect_rtcp(&hex(SRTCP_128_TAG_ONLY))
        .unwrap();
    assert_eq!((plain, index), (hex(RTCP), 0x5d4));
}

fn pair(profile: Profile) -> (Srtp, Srtp) {
    let material: Vec<u8> = (0..2 * (profile.key_len() + profile.salt_len()))
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(3))
        .collect();
    // The DTLS client protects; the server, reading the same export, unprotects.
    let (client_local, client_remote) = split_export(profile, &material, true).unwrap();
    let (server_local, server_remote) = split_export(profile, &material, false).unwrap();
    assert_eq!(
        server_remote, client_local,
        "the server reads with the client's key"
    );
    assert_eq!(server_local, client_remote);
    let p = provider();
    (
        Srtp::new(&p, &client_local, true).unwrap(),
        Srtp::new(&p, &server_remote, false).unwrap(),
    )
}

const ALL: [Profile; 3] = [
    Profile::Aes128CmSha1_80,
    Profile::AeadAes128Gcm,
    Profile::AeadAes256Gcm,
];

#[test]
fn every_profile_reads_back_what_it_protects_past_a_rollover() {
    let rtp = hex(RTP);
    for profile in ALL {
        let (mut tx, mut rx) = pair(profile);
        for roc in [0, 1, 70_000] {
            let mut out = Vec::new();
            tx.protect_rtp(&rtp[..12], &rtp[12..], roc, &mut out)
                .unwrap();
            assert_eq!(out.len(), rtp.len() + profile.rtp_overhead());
            assert_ne!(&out[12..rtp.len()], &rtp[12..], "the payload is encrypted");
            assert_eq!(rx.unprotect_rtp(&out, 12, roc).unwrap(), rtp);
            assert_eq!(
                rx.unprotect_rtp(&out, 12, roc + 1),
                Err(SrtpError::Authentication),
                "{profile:?}: the rollover counter is authenticated"
            );
        }
        let mut out = Vec::new();
        tx.protect_rtcp(&hex(RTCP), &mut out).unwrap();
        assert_eq!(out.len(), hex(RTCP).len() + profile.rtcp_overhead());
        assert_eq!(rx.unprotect_rtcp(&out).unwrap(), (hex(RTCP), 1));
    }
}

#[test]
fn tampered_or_truncated_packets_are_refused_without_panicking() {
    let rtp = hex(RTP);
    for profile in ALL {
        let (mut tx, mut rx) = pair(profile);
        let mut srtp = Vec::new();
        tx.protect_rtp(&rtp[..12], &rtp[12..], 0, &mut srtp)
            .unwrap();
        let mut srtcp = Vec::new();
        tx.protect_rtcp(&hex(RTCP), &mut srtcp).unwrap();
        for i in [0, 5, 13, srtcp.len() - 1] {
            let mut bad = srtcp.clone();
            bad[i] ^= 0x01;
            assert!(rx.unprotect_rtcp(&bad).is_err(), "{profile:?} byte {i}");
        }
        let mut bad = srtp.clone();
        bad[20] ^= 0x80;
        assert_eq!(
            rx.unprotect_rtp(&bad, 12, 0),
            Err(SrtpError::Authentication)
        );
        for n in 0..srtcp.len() {
            assert!(rx.unprotect_rtcp(&srtcp[..n]).is_err(), "{profile:?} {n}");
        }
        for n in 0..srtp.len() {
            let _ = rx.unprotect_rtp(&srtp[..n], 12, 0);
        }
    }
}

#[test]
fn a_short_export_is_an_error_not_a_panic() {
    assert!(matches!(
        split_export(Profile::AeadAes256Gcm, &[0u8; 40], false),
        Err(SrtpError::KeyingMaterial { need: 88, .. })
    ));
}
