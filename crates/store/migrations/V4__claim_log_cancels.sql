-- Settlement sums claims and cancellations in one scan and looks up only the cancellations, so
-- an index over every claim costs a million index insertions per show for no reader. The
-- cancellations alone stay indexed, by the claim they name.
DROP INDEX IF EXISTS claim_log_by_claim;
CREATE INDEX claim_log_cancels ON claim_log_entries (show_id, claim_id) WHERE kind = 'cancel';
