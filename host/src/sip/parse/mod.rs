//! SIP parsing and framing (being written).

#[cfg(test)]
mod explore {
    #[test]
    fn explore_uri() {
        for u in ["sip:j.user@example.com", "sip:user@example.com:5060;transport=tcp", "sip:+4912345@host;user=phone", "tel:+1234", "isbn:2983792873", "sip:sips%3Auser%40example.com@example.net", "sip:user;par=u%40example.net@example.com", "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com", "sip:user@example.com?Route=%3Csip:example.com%3E", "nobodyKnowsThisScheme:totallyopaquecontent", "soap.beep://192.0.2.103:3002", "sip:[2001:db8::1]:5060", "sip:alice:secret@atlanta.com;transport=tcp", "sip:vivekg@chair-dnrc.example.com;unknownparam", "sip:user@example.com;lr;maddr=1.2.3.4", "sips:bob@biloxi.example.com", "sip:192.0.2.1", "sip:alice@[::1]", "sip:onnet123@sw.example.com;user=phone?foo=bar"] {
            let r = rsip::Uri::try_from(u);
            println!("{u}\n   => {:?}", r.map(|x| (x.to_string(), x)));
        }
        use rsip::headers::{ToTypedHeader, UntypedHeader};
        for v in ["SIP/2.0/UDP 192.0.2.15;;,;,,", "SIP/2.0/UDP host.example.com;branch=z9hG4bK1;rport", "SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKx", "SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bKx", "SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en", "SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf", "SIP/2.0/UDP a;branch=1, SIP/2.0/UDP b;branch=2", "SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw", "SIP/2.0/UDP 192.0.2.1;received=1.2.3.4;branch=x;rport=5060", "garbage", "", "SIP/2.0/TCP host.example.com;received=192.0.2.5;branch=verylong"] {
            let r = rsip::headers::Via::new(v).typed();
            println!("VIA {v}\n   => {:?}", r.map(|x| (x.to_string(), x)));
        }
        for v in ["\"Mr. J. User <sip:j.user@example.com>", "sip:caller@example.net;tag=93334", "Bell, Alexander <sip:a.g.bell@example.com>;tag=43", "\"Watson, Thomas\" < sip:t.watson@example.org >", "isbn:2983792873", "<http://www.example.com>;tag=3234233", "\"J Rosenberg \\\\\\\"\" <sip:jdrosen@example.com> ; tag = 98asjd8", "caller<sip:caller@example.com>;tag=323", "sip:%75se%72@example.com", "<sip:I%20have%20spaces@example.net>;tag=938", "\"BEL:\x07 NUL:\0 DEL:\x7f\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>", "Alice <sip:alice@atlanta.com>;tag=1928301774", "<sip:+13035551111@ift.client.example.net;user=phone>", "sip:+16505552222@ss1.example.net;user=phone", ""] {
            let r = rsip::headers::From::new(v).typed();
            println!("FROM {v}\n   => {:?}", r.map(|x| (x.to_string(), x)));
        }
        for v in ["0009 INVITE", "36893488147419103232 REGISTER", "8 INVITE", "1 FOO", "-1 INVITE", "2 invite", "x"] {
            let r = rsip::headers::CSeq::new(v).typed();
            println!("CSEQ {v} => {:?}", r);
        }
    }
}
