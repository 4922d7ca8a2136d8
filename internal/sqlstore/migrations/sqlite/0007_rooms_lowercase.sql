-- Room names are compared without regard to case ("DEMO2" and "demo2" are one room)
-- and stored lower-case. Where two chats in progress fall into one room, the older
-- keeps it and the newer is ended (no one named as ending it), so the usual export
-- mails its transcript; a room never holds two chats in progress.
UPDATE sessions SET status = 'ending', ended_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000000, ended_by = ''
 WHERE status = 'inprogress' AND EXISTS (
   SELECT 1 FROM sessions o
    WHERE o.status = 'inprogress' AND lower(o.room) = lower(sessions.room) AND o.id <> sessions.id
      AND (o.initiated_at < sessions.initiated_at OR (o.initiated_at = sessions.initiated_at AND o.id < sessions.id)));
UPDATE sessions SET room = lower(room) WHERE room <> lower(room);
UPDATE messages SET room = lower(room) WHERE room <> lower(room);
UPDATE message_log SET room = lower(room) WHERE room <> lower(room);
UPDATE signins SET room = lower(room) WHERE room <> lower(room);
