//! Reading an RTP session description (as ffmpeg writes it with `-sdp_file`, or by
//! hand) into the media an RTP ingest listens for.
//!
//! The `c=` line (media-level, else session-level) gives the address the sender sends
//! to: a multicast group is joined, a unicast address is the one to bind. Each audio or
//! video `m=` line gives a port and its first payload type with `a=rtpmap`/`a=fmtp`
//! (static types 0 and 8 need no rtpmap). Parsing uses sdp-types, after the same
//! normalisation WHIP offers get, and never panics.

use std::net::IpAddr;

use sdp_types::{Connection, Session};
use str0m::media::MediaKind;

use super::MediumSpec;
use crate::sdp::parse::{codecs_of, normalise};

/// What an SDP file describes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SdpFile {
    /// The `c=` address (without a `/ttl` suffix), if any.
    pub(crate) address: Option<IpAddr>,
    /// One entry per audio or video m-line.
    pub(crate) media: Vec<MediumSpec>,
}

fn connection_ip(c: &Connection) -> Result<IpAddr, String> {
    let addr = c.connection_address.split('/').next().unwrap_or_default();
    addr.parse()
        .map_err(|_| format!("c= address {:?} is not an IP address", c.connection_address))
}

/// Parses the text of an SDP file. Errors are one line naming the problem.
pub(crate) fn parse_sdp_file(text: &str) -> Result<SdpFile, String> {
    if text.len() > 64 * 1024 {
        return Err("SDP file larger than 64 KiB".into());
    }
    let normalised = normalise(text).map_err(|e| e.to_string())?;
    let session = Session::parse(normalised.as_bytes()).map_err(|e| format!("SDP: {e}"))?;
    let mut address = session.connection.as_ref().map(connection_ip).transpose()?;
    let mut media = Vec::new();
    for m in &session.medias {
        let kind = match m.media.as_str() {
            "audio" => MediaKind::Audio,
            "video" => MediaKind::Video,
            _ => continue,
        };
        if let Some(c) = m.connections.first() {
            address = Some(connection_ip(c)?);
        }
        if m.port == 0 {
            return Err(format!("m={} has port 0", m.media));
        }
        if media.iter().any(|x: &MediumSpec| x.kind == kind) {
            return Err(format!("more than one m={} line", m.media));
        }
        let codec = codecs_of(m)
            .into_iter()
            .find(|c| c.is_media())
            .ok_or_else(|| format!("m={} names no codec with an rtpmap", m.media))?;
        media.push(MediumSpec {
            kind,
            port: m.port,
            codec,
        });
    }
    if media.is_empty() {
        return Err("no audio or video m= line".into());
    }
    Ok(SdpFile { address, media })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FFMPEG: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nt=0 0\r\na=tool:libavformat 59.27.100\r\n\
m=video 5004 RTP/AVP 96\r\nc=IN IP4 127.0.0.1\r\nb=AS:1000\r\na=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LAHtkAoC/5YQAAAwABAAADADwPFi5I,aMuDyyA=; profile-level-id=42C01E\r\n\
m=audio 5006 RTP/AVP 111\r\nc=IN IP4 127.0.0.1\r\nb=AS:64\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 sprop-stereo=1\r\n";

    #[test]
    fn reads_an_ffmpeg_sdp_file() {
        let f = parse_sdp_file(FFMPEG).unwrap();
        assert_eq!(f.address, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(f.media.len(), 2);
        let v = &f.media[0];
        assert_eq!((v.kind, v.port, v.codec.pt), (MediaKind::Video, 5004, 96));
        assert_eq!(v.codec.name, "H264");
        assert!(v.codec.fmtp.contains("sprop-parameter-sets"));
        let a = &f.media[1];
        assert_eq!(
            (a.kind, a.port, a.codec.pt, a.codec.clock_rate),
            (MediaKind::Audio, 5006, 111, 48_000)
        );
        assert_eq!(a.codec.channels, Some(2));
    }

    #[test]
    fn static_pcmu_and_multicast_ttl() {
        let f = parse_sdp_file("v=0\no=- 0 0 IN IP4 1.2.3.4\ns=cam\nc=IN IP4 239.1.2.3/16\nt=0 0\nm=audio 7000 RTP/AVP 0\n").unwrap();
        assert_eq!(f.address, Some("239.1.2.3".parse().unwrap()));
        assert_eq!(f.media[0].codec.name.to_ascii_uppercase(), "PCMU");
        assert_eq!(f.media[0].codec.clock_rate, 8_000);
    }

    #[test]
    fn bad_files_are_errors_not_panics() {
        for text in [
            "",
            "junk",
            "v=0\n",
            "v=0\nm=video 0 RTP/AVP 96\n",
            "v=0\nc=IN IP4 nowhere\nm=video 5 RTP/AVP 96\na=rtpmap:96 H264/90000\n",
            "v=0\nm=video 5 RTP/AVP 96\n",
        ] {
            assert!(parse_sdp_file(text).is_err(), "{text:?}");
        }
    }
}
