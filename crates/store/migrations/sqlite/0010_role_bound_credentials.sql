-- A session or an API token is bound to the role its account had when it
-- was issued. A role change ends the account's sessions and revokes its
-- tokens in one transaction, but a sign-in or a token being made at that
-- very moment read the account before the change and committed after it;
-- such a credential names the old role and is refused on its next use.
-- Existing credentials take their account's present role (every earlier
-- role change ended those issued before it).
ALTER TABLE sessions ADD COLUMN issued_role TEXT;
UPDATE sessions SET issued_role = (SELECT role FROM users WHERE users.id = sessions.user_id)
WHERE user_id IS NOT NULL;

ALTER TABLE api_tokens ADD COLUMN issued_role TEXT NOT NULL DEFAULT '';
UPDATE api_tokens SET issued_role = (SELECT role FROM users WHERE users.id = api_tokens.user_id);
