-- The access log (who read or changed which record) is append-only, as the
-- security log is: rows can be added, never changed or removed. One function
-- refuses for both tables (it names the table), replacing the security log's
-- own; neither table can be truncated either.
CREATE FUNCTION refuse_change_to_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER security_events_no_change ON security_events;
DROP FUNCTION security_events_append_only();
CREATE TRIGGER security_events_no_change BEFORE UPDATE OR DELETE ON security_events
    FOR EACH ROW EXECUTE FUNCTION refuse_change_to_append_only();
CREATE TRIGGER security_events_no_truncate BEFORE TRUNCATE ON security_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change_to_append_only();

CREATE TRIGGER access_log_no_change BEFORE UPDATE OR DELETE ON access_log
    FOR EACH ROW EXECUTE FUNCTION refuse_change_to_append_only();
CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change_to_append_only();
