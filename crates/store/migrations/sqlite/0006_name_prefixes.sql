-- Name search by prefix that costs the same at a thousand patients and at a
-- million: every prefix of every folded name word is a row, keyed by the
-- prefix and then by the order results are shown in (family, given, id).
-- A search for "smi" is then one ordered index range that stops at the page
-- size, instead of collecting every match and sorting it.
CREATE TABLE patient_name_prefixes (
    prefix        TEXT NOT NULL,
    family_folded TEXT NOT NULL,
    given_folded  TEXT NOT NULL,
    patient_id    TEXT NOT NULL REFERENCES patients (id),
    PRIMARY KEY (prefix, family_folded, given_folded, patient_id)
) WITHOUT ROWID;
CREATE INDEX patient_name_prefixes_by_patient ON patient_name_prefixes (patient_id, prefix);

WITH RECURSIVE pre (n, token, patient_id) AS (
    SELECT 1, token, patient_id FROM patient_name_tokens
    UNION ALL
    SELECT n + 1, token, patient_id FROM pre WHERE n < length(token)
)
INSERT OR IGNORE INTO patient_name_prefixes (prefix, family_folded, given_folded, patient_id)
SELECT substr(pre.token, 1, pre.n), p.family_folded, p.given_folded, p.id
FROM pre JOIN patients p ON p.id = pre.patient_id;

DROP TABLE patient_name_tokens;

-- Listing and family-prefix search walk this index in display order.
DROP INDEX patients_by_family;
CREATE INDEX patients_by_family ON patients (family_folded, given_folded, id);
