package postgres

// Audit actions written by the alerting stores.
const (
	ActionRuleCreate    = "rule.create"
	ActionRuleUpdate    = "rule.update"
	ActionRuleDelete    = "rule.delete"
	ActionChannelCreate = "channel.create"
	ActionChannelUpdate = "channel.update"
	ActionChannelDelete = "channel.delete"
	ActionSilenceCreate = "silence.create"
	ActionSilenceDelete = "silence.delete"
	ActionAlertAck      = "alert.ack"
)
