-- Room names are compared without regard to case ("DEMO2" and "demo2" are one room)
-- and stored lower-case. Where two chats in progress fall into one room, the older
-- keeps it and the newer is ended (no one named as ending it), so the usual export
-- mails its transcript; a room never holds two chats in progress.
UPDATE sessions s
  JOIN (SELECT n.id FROM sessions n
          JOIN sessions o ON o.status = 'inprogress' AND LOWER(o.room) = LOWER(n.room) AND o.id <> n.id
               AND (o.initiated_at < n.initiated_at OR (o.initiated_at = n.initiated_at AND o.id < n.id))
         WHERE n.status = 'inprogress') newer ON newer.id = s.id
   SET s.status = 'ending', s.ended_at = UTC_TIMESTAMP(6), s.ended_by = '';
UPDATE sessions SET room = LOWER(room) WHERE room <> LOWER(room);
UPDATE messages SET room = LOWER(room) WHERE room <> LOWER(room);
UPDATE signins SET room = LOWER(room) WHERE room <> LOWER(room);
