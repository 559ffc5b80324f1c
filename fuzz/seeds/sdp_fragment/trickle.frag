a=ice-ufrag:u1
a=ice-pwd:p1passwordpasswordpass
a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0
a=end-of-candidates
