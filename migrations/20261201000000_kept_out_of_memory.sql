-- Some replies are kept out of vector memory on purpose: the "forget me"
-- confirmation and history exports (`conversation::Reply::memorize`). Until
-- now nothing in the row said so, so such an exchange looked exactly like one
-- replied while memory was off, or one whose memory write died: `doctor`
-- counted them as "not yet in memory" for ever, and nothing could tell which
-- exchanges memory should still catch up on. Now the row says it, and a
-- record of one in memory is impossible.
ALTER TABLE exchanges ADD COLUMN kept_out_of_memory boolean NOT NULL DEFAULT false;
ALTER TABLE exchanges ADD CONSTRAINT kept_out_is_not_memorized
    CHECK (NOT kept_out_of_memory OR memorized_at IS NULL);

-- Earlier rows: the replies kept out so far are recognised by their text, as
-- this version words them (src/i18n/chat.rs: forget_prompt, export_intro),
-- among replied exchanges memory does not hold.
UPDATE exchanges SET kept_out_of_memory = true
WHERE status = 'replied' AND memorized_at IS NULL
  AND (reply_text IN (
          '정말 저와 나눈 대화 기록과 기억을 모두 지울까요? 되돌릴 수 없어요. 아래 버튼을 누르시거나 "네, 잊어줘"라고 보내 주세요.',
          'Do you really want me to delete all our conversations and my memory of them? This cannot be undone. Press a button below, or send "yes, forget me".')
       OR reply_text LIKE '대화 기록 내보내기: %'
       OR reply_text LIKE 'Your history export: %');
