//! Tests of the pgoutput decoder, with encoders written from the protocol
//! documentation.

pub(crate) mod wire {
    //! Encoders for test payloads, written from the protocol documentation.
    use super::super::{Datum, OldTuple, RelationBody};

    pub fn cstr(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    pub fn tuple(out: &mut Vec<u8>, datums: &[Datum]) {
        out.extend_from_slice(&(datums.len() as i16).to_be_bytes());
        for d in datums {
            match d {
                Datum::Null => out.push(b'n'),
                Datum::UnchangedToast => out.push(b'u'),
                Datum::Text(b) | Datum::Binary(b) => {
                    out.push(if matches!(d, Datum::Text(_)) {
                        b't'
                    } else {
                        b'b'
                    });
                    out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    out.extend_from_slice(b);
                }
            }
        }
    }

    pub fn relation(rel: &RelationBody) -> Vec<u8> {
        let mut out = vec![b'R'];
        out.extend_from_slice(&rel.id.to_be_bytes());
        cstr(&mut out, &rel.schema);
        cstr(&mut out, &rel.name);
        out.push(rel.replica_identity);
        out.extend_from_slice(&(rel.columns.len() as i16).to_be_bytes());
        for c in &rel.columns {
            out.push(u8::from(c.is_key));
            cstr(&mut out, &c.name);
            out.extend_from_slice(&c.type_oid.to_be_bytes());
            out.extend_from_slice(&c.type_modifier.to_be_bytes());
        }
        out
    }

    pub fn update(relation_id: u32, old: Option<&OldTuple>, new: &[Datum]) -> Vec<u8> {
        let mut out = vec![b'U'];
        out.extend_from_slice(&relation_id.to_be_bytes());
        match old {
            Some(OldTuple::Key(d)) => {
                out.push(b'K');
                tuple(&mut out, d);
            }
            Some(OldTuple::Full(d)) => {
                out.push(b'O');
                tuple(&mut out, d);
            }
            None => {}
        }
        out.push(b'N');
        tuple(&mut out, new);
        out
    }
}

mod cases {
    use super::super::*;
    use super::wire;
    use proptest::prelude::*;

    fn text(s: &str) -> Datum {
        Datum::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn decodes_begin_and_commit() {
        let mut b = vec![b'B'];
        b.extend_from_slice(&0x1_0000_0010u64.to_be_bytes());
        b.extend_from_slice(&42i64.to_be_bytes());
        b.extend_from_slice(&7u32.to_be_bytes());
        assert_eq!(
            decode(b.into()),
            Ok(Message::Begin {
                final_lsn: Lsn(0x1_0000_0010),
                commit_time_us: 42,
                xid: 7
            })
        );
        let mut c = vec![b'C', 0];
        c.extend_from_slice(&10u64.to_be_bytes());
        c.extend_from_slice(&20u64.to_be_bytes());
        c.extend_from_slice(&30i64.to_be_bytes());
        assert_eq!(
            decode(c.into()),
            Ok(Message::Commit {
                commit_lsn: Lsn(10),
                end_lsn: Lsn(20),
                commit_time_us: 30
            })
        );
    }

    #[test]
    fn decodes_relation_and_update_with_each_old_kind() {
        let rel = RelationBody {
            id: 16384,
            schema: "public".into(),
            name: "Orders".into(),
            replica_identity: b'd',
            columns: vec![
                Column {
                    is_key: true,
                    name: "id".into(),
                    type_oid: 23,
                    value_oid: 23,
                    type_modifier: -1,
                },
                Column {
                    is_key: false,
                    name: "note".into(),
                    type_oid: 25,
                    value_oid: 25,
                    type_modifier: -1,
                },
            ],
        };
        assert_eq!(
            decode(wire::relation(&rel).into()),
            Ok(Message::Relation(rel))
        );
        let new = vec![text("1"), Datum::UnchangedToast];
        for old in [
            None,
            Some(OldTuple::Key(vec![text("1"), Datum::Null])),
            Some(OldTuple::Full(vec![text("1"), text("x")])),
        ] {
            let payload = wire::update(16384, old.as_ref(), &new);
            assert_eq!(
                decode(payload.into()),
                Ok(Message::Update {
                    relation_id: 16384,
                    old: old.clone(),
                    new: new.clone()
                })
            );
        }
    }

    #[test]
    fn decodes_truncate_and_logical_message() {
        let mut t = vec![b'T'];
        t.extend_from_slice(&2i32.to_be_bytes());
        t.push(1);
        t.extend_from_slice(&5u32.to_be_bytes());
        t.extend_from_slice(&6u32.to_be_bytes());
        assert_eq!(
            decode(t.into()),
            Ok(Message::Truncate {
                options: 1,
                relation_ids: vec![5, 6]
            })
        );
        let mut m = vec![b'M', 1];
        m.extend_from_slice(&9u64.to_be_bytes());
        wire::cstr(&mut m, "app");
        m.extend_from_slice(&2i32.to_be_bytes());
        m.extend_from_slice(b"hi");
        assert_eq!(
            decode(m.into()),
            Ok(Message::Logical {
                transactional: true,
                lsn: Lsn(9),
                prefix: "app".into(),
                content: Bytes::from_static(b"hi")
            })
        );
    }

    #[test]
    fn rejects_damaged_payloads_with_a_reason() {
        assert_eq!(
            decode(Bytes::new()),
            Err(DecodeError::Truncated("message tag"))
        );
        assert_eq!(
            decode(Bytes::from_static(b"Z")),
            Err(DecodeError::UnknownTag(b'Z'))
        );
        assert_eq!(
            decode(Bytes::from_static(b"I\0\0\0\x01X")),
            Err(DecodeError::TupleMarker(b'X', "Insert"))
        );
        assert_eq!(
            decode(Bytes::from_static(b"I\0\0\0\x01N\0\x01t\xff\xff\xff\xff")),
            Err(DecodeError::NegativeLength(-1, "text value"))
        );
        let mut ok = wire::update(1, None, &[text("a")]);
        ok.push(0);
        assert_eq!(decode(ok.into()), Err(DecodeError::Trailing(1, "Update")));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(data.into());
        }

        #[test]
        fn never_panics_on_mutated_valid_messages(
            flip in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
            cut in any::<usize>(),
        ) {
            let mut payload = wire::update(7, Some(&OldTuple::Full(vec![text("old"), Datum::Null])), &[text("new"), Datum::UnchangedToast]);
            for (i, b) in flip {
                let n = payload.len();
                payload[i % n] = b;
            }
            payload.truncate(cut % (payload.len() + 1));
            let _ = decode(payload.into());
        }
    }
}
