-- Patients (FHIR R4 Patient, every version kept), clinical letters, and the
-- access log of who read or changed which record.

CREATE TABLE patients (
    id            TEXT PRIMARY KEY,
    version       BIGINT NOT NULL,
    nhs_number    TEXT UNIQUE,
    family_folded TEXT COLLATE "C" NOT NULL,
    given_folded  TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    birth_date    TEXT,
    gender        TEXT,
    active        BOOLEAN NOT NULL,
    resource      TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX patients_by_family ON patients (family_folded, id);
CREATE INDEX patients_by_given ON patients (given_folded, id);
CREATE INDEX patients_by_birth_date ON patients (birth_date);

-- Every folded word of a patient's family and given names, for prefix search.
CREATE TABLE patient_name_tokens (
    token      TEXT COLLATE "C" NOT NULL,
    patient_id TEXT NOT NULL REFERENCES patients (id),
    PRIMARY KEY (token, patient_id)
);
CREATE INDEX patient_name_tokens_by_patient ON patient_name_tokens (patient_id);

CREATE TABLE patient_versions (
    patient_id  TEXT NOT NULL REFERENCES patients (id),
    version     BIGINT NOT NULL,
    resource    TEXT NOT NULL,
    recorded_at BIGINT NOT NULL,
    recorded_by TEXT NOT NULL,
    PRIMARY KEY (patient_id, version)
);

CREATE TABLE letters (
    id            TEXT PRIMARY KEY,
    patient_id    TEXT NOT NULL REFERENCES patients (id),
    version       BIGINT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('draft', 'final', 'entered-in-error')),
    title         TEXT NOT NULL,
    body          TEXT NOT NULL,
    author_id     TEXT NOT NULL REFERENCES users (id),
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    finalised_at  BIGINT,
    amends        TEXT REFERENCES letters (id),
    superseded_by TEXT REFERENCES letters (id),
    error_reason  TEXT
);
CREATE INDEX letters_by_patient ON letters (patient_id, created_at, id);

CREATE TABLE access_log (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            BIGINT NOT NULL,
    user_id       TEXT,
    username      TEXT NOT NULL,
    role          TEXT NOT NULL,
    action        TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT,
    patient_id    TEXT,
    outcome       TEXT NOT NULL
);
CREATE INDEX access_log_by_patient ON access_log (patient_id, id);

ALTER TABLE users ADD COLUMN patient_id TEXT REFERENCES patients (id);
