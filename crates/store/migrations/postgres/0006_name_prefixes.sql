-- Name search by prefix that costs the same at a thousand patients and at a
-- million: every prefix of every folded name word is a row, keyed by the
-- prefix and then by the order results are shown in (family, given, id).
-- A search for "smi" is then one ordered index range that stops at the page
-- size, instead of collecting every match and sorting it. The columns
-- collate as their twins in patients do, so both give one order.
CREATE TABLE patient_name_prefixes (
    prefix        TEXT COLLATE "C" NOT NULL,
    family_folded TEXT COLLATE "C" NOT NULL,
    given_folded  TEXT NOT NULL,
    patient_id    TEXT NOT NULL REFERENCES patients (id),
    PRIMARY KEY (prefix, family_folded, given_folded, patient_id)
);
CREATE INDEX patient_name_prefixes_by_patient ON patient_name_prefixes (patient_id, prefix);

INSERT INTO patient_name_prefixes (prefix, family_folded, given_folded, patient_id)
SELECT substr(t.token, 1, n), p.family_folded, p.given_folded, p.id
FROM patient_name_tokens t
JOIN patients p ON p.id = t.patient_id
CROSS JOIN LATERAL generate_series(1, char_length(t.token)) AS n
ON CONFLICT DO NOTHING;

DROP TABLE patient_name_tokens;

-- Listing and family-prefix search walk this index in display order.
DROP INDEX patients_by_family;
CREATE INDEX patients_by_family ON patients (family_folded, given_folded, id);
