-- A search whose every word is one letter ("o s" for Ó Súilleabháin) walked
-- every name with one of the letters: a tenth of all patients. Each two
-- different initials of a name are now a row too, "o s" (the letters in
-- code-point order, a space between; no name word holds a space), so such a
-- search is one ordered range like any other. The one-letter rows already
-- stored are a name's initials.
INSERT OR IGNORE INTO patient_name_prefixes (prefix, family_folded, given_folded, patient_id)
SELECT a.prefix || ' ' || b.prefix, a.family_folded, a.given_folded, a.patient_id
FROM patient_name_prefixes a
JOIN patient_name_prefixes b ON b.patient_id = a.patient_id AND b.prefix > a.prefix
WHERE length(a.prefix) = 1 AND length(b.prefix) = 1;
