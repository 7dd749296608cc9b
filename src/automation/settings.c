/* The automation settings: one table of paths and defaults (settings.h). */
#include "automation/settings.h"
#include "base/config.h"

#include <stddef.h>
#include <stdio.h>

#define S(field, path, dflt)                                                                       \
	{                                                                                          \
		"automation." path, offsetof(struct csa_auto_settings, field), dflt                \
	}

/* The defaults are those of the default configuration (base/config.c);
 * test_automation checks that the two agree. */
static const struct {
	const char *path;
	size_t off;
	double dflt;
} table[] = {
    S(z, "z", 1.96),
    S(target_accuracy, "target_accuracy", 0.97),
    S(critical_target_accuracy, "critical_target_accuracy", 0.995),
    S(min_decisions, "min_decisions", 50),
    S(segment_min_decisions, "segment_min_decisions", 30),
    S(readiness_required, "readiness_required", 0.8),
    S(readiness_required_critical, "readiness_required_critical", 0.9),
    S(window, "window", 500),
    S(review_floor, "review_floor", 0.05),
    S(review_half_life, "review_half_life", 200),
    S(review_uncertain_share, "review_uncertain_share", 0.7),
    S(review_delay_minutes, "review_delay_minutes", 60),
    S(baseline_decision_ms, "baseline_decision_ms", 60000),
    S(capture_grace_minutes, "capture_grace_minutes", 60),
    S(monitor.window, "monitor.window", 200),
    S(monitor.min_sample, "monitor.min_sample", 30),
    S(monitor.accuracy_min, "monitor.accuracy_min", 0.85),
    S(monitor.overautomation_rate, "monitor.overautomation_rate", 0.9),
    S(monitor.overautomation_accuracy, "monitor.overautomation_accuracy", 0.9),
    S(monitor.psi_alert, "monitor.psi_alert", 0.25),
    S(monitor.accuracy_drop, "monitor.accuracy_drop", 0.1),
};

#define G(field) #field, offsetof(struct csa_gate_settings, field)

/* Gate criteria by phase (PHASE_1 .. PHASE_5); a criterion a phase's gate
 * does not use has the value it would have if it were added. */
static const struct {
	const char *key;
	size_t off;
	double dflt[6];
} gate_table[] = {
    {G(min_decisions), {0, 100, 100, 100, 100, 0}},
    {G(capture_rate), {0, 1.0, 1.0, 1.0, 1.0, 1.0}},
    {G(accuracy), {0, 0.80, 0.85, 0.85, 0.85, 0.85}},
    {G(agreement), {0, 0.75, 0.75, 0.75, 0.75, 0.75}},
    {G(decision_time_ratio), {0, 0.80, 0.80, 0.80, 0.80, 0.80}},
    {G(autonomous_rate), {0, 0.60, 0.60, 0.60, 0.80, 0.95}},
    {G(autonomous_accuracy), {0, 0.90, 0.90, 0.90, 0.90, 0.90}},
    {G(min_reviewed), {0, 0, 0, 30, 30, 0}},
    {G(intervention_time_ratio), {0, 0.50, 0.50, 0.50, 0.50, 0.50}},
    {G(critical_errors), {0, 0, 0, 0, 0, 0}},
};

static double num(const struct csa_config *cfg, const char *path, double dflt)
{
	json_t *v = cfg ? csa_config_get(cfg, path) : NULL;
	return json_is_number(v) ? json_number_value(v) : dflt;
}

static int flag(const struct csa_config *cfg, const char *path, int dflt)
{
	json_t *v = cfg ? csa_config_get(cfg, path) : NULL;
	return json_is_boolean(v) ? json_is_true(v) : dflt;
}

void csa_auto_settings_read(const struct csa_config *cfg, struct csa_auto_settings *s)
{
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		*(double *)((char *)s + table[i].off) = num(cfg, table[i].path, table[i].dflt);
	s->reversed_on_critical_ticket =
	    flag(cfg, "automation.critical_errors.reversed_on_critical_ticket", 1);
	s->wrong_automated_resolution =
	    flag(cfg, "automation.critical_errors.wrong_automated_resolution", 1);
	s->gates[0] = (struct csa_gate_settings){0};
	for (int p = 1; p <= 5; p++) {
		for (size_t i = 0; i < sizeof(gate_table) / sizeof(gate_table[0]); i++) {
			char path[96];
			snprintf(path, sizeof(path), "automation.gates.PHASE_%d.%s", p,
			         gate_table[i].key);
			*(double *)((char *)&s->gates[p] + gate_table[i].off) =
			    num(cfg, path, gate_table[i].dflt[p]);
		}
	}
}
