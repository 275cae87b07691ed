//! Restart after a crash between the state commit and the ledger write: the
//! state machine holds heights the ledger index does not; start-up rebuilds
//! them from the stored blocks and the chain goes on, receipts included, and
//! the committed log gets the rebuilt heights back with the next commit.

use palisade_crypto::api::{SubmitResponse, TxStatus};
use palisade_crypto::encode;
use palisade_node::storage::{Batch, Cf};
use palisade_node::NodeStore;

use super::cluster::Cluster;
use super::http::get_json;
use super::state_store::register;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_between_state_and_ledger_writes_rebuilds_its_ledger() {
    let mut c = Cluster::start(1).await;
    let (_, resp) = c
        .submit(
            0,
            &register(&c.genesis.hash(), &c.service, 0, "api", "r1"),
            true,
        )
        .await;
    assert_eq!(resp.status, TxStatus::Committed);
    let h = c
        .wait_height(0, resp.receipt.as_ref().unwrap().height + 2)
        .await;
    c.stop(0).await;
    let top = {
        let store = NodeStore::open_rocks(&c.configs[0].data_dir.join("db")).unwrap();
        let top = store.committed_height().unwrap();
        assert!(top >= h);
        // Undo the ledger write of the last two heights, as if the process
        // died after the state commit; their blocks are still stored then.
        let mut batch = Batch::new();
        for height in top - 1..=top {
            let logged = store.committed_block(height).unwrap().unwrap();
            store.put_pending_block(&logged.block).unwrap();
            batch.delete(Cf::Infos, height.to_be_bytes().to_vec());
            batch.delete(Cf::Certs, height.to_be_bytes().to_vec());
            // The committed log is written unsynced just before the ledger:
            // it died with it.
            batch.delete(Cf::Log, height.to_be_bytes().to_vec());
        }
        // And a leftover of an old round: a stored block far below the root,
        // which recovery does not hand to the replica.
        let old = store.committed_block(1).unwrap().unwrap();
        store.put_pending_block(&old.block).unwrap();
        batch.put(Cf::Meta, b"committed_height".to_vec(), encode(&(top - 2)));
        store.kv().write(batch, true).unwrap();
        assert_eq!(store.committed_height().unwrap(), top - 2);
        top
    };
    c.restart(0).await;
    c.wait_height(0, top + 2).await;
    let again: SubmitResponse = get_json(c.api(0), &format!("/v1/tx/{}", resp.tx_id), 200).await;
    assert_eq!(again.status, TxStatus::Committed);
    c.stop(0).await;
    // Committed blocks leave the uncommitted-block column, including those
    // put there before the restart (the driver learns them at start).
    {
        let store = NodeStore::open_rocks(&c.configs[0].data_dir.join("db")).unwrap();
        let committed = store.committed_height().unwrap();
        assert!(committed >= top + 2);
        let stale: Vec<u64> = store
            .pending_blocks()
            .unwrap()
            .iter()
            .map(|b| b.height)
            .filter(|h| *h <= committed)
            .collect();
        assert!(
            stale.is_empty(),
            "committed heights still stored as pending: {stale:?}"
        );
        // The committed log (history for sync and audits) has every height
        // again: the rebuilt ones got the next batch's commit QC.
        let missing: Vec<u64> = (1..=committed)
            .filter(|h| store.committed_block(*h).unwrap().is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "committed log lacks heights {missing:?}"
        );
    }
    c.shutdown().await;
}
