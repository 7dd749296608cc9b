/*
 * The automation controller's numeric settings (csa.json "automation"),
 * typed and read once per configuration snapshot instead of looked up by
 * path, with a default repeated, wherever one is needed. Each setting's
 * default is in the one table of settings.c and equals the default
 * configuration's value (base/config.c); a value the configuration leaves
 * out, or gives as something other than a number, reads as its default.
 */
#ifndef CSA_AUTOMATION_SETTINGS_H
#define CSA_AUTOMATION_SETTINGS_H

struct csa_config;

/* The criteria of the gate from one phase to the next
 * ("automation.gates.PHASE_n"); which ones apply depends on the phase. */
struct csa_gate_settings {
	double min_decisions, capture_rate, accuracy, agreement, decision_time_ratio,
	    autonomous_rate, autonomous_accuracy, min_reviewed, intervention_time_ratio,
	    critical_errors;
};

struct csa_auto_settings {
	/* thresholds and readiness */
	double z, target_accuracy, critical_target_accuracy, min_decisions, segment_min_decisions,
	    readiness_required, readiness_required_critical, window;
	/* review sampling of autonomous decisions */
	double review_floor, review_half_life, review_uncertain_share, review_delay_minutes;
	/* mean human decision time assumed before PHASE_1 has any */
	double baseline_decision_ms;
	/* how long a decision may wait for a person before PHASE_1 counts it
	 * as not captured */
	double capture_grace_minutes;
	/* the quality monitor ("automation.monitor") */
	struct {
		double window, min_sample, accuracy_min, overautomation_rate,
		    overautomation_accuracy, psi_alert, accuracy_drop;
	} monitor;
	/* "automation.critical_errors": what counts as a critical error */
	int reversed_on_critical_ticket, wrong_automated_resolution;
	struct csa_gate_settings gates[6]; /* by phase, 1..5; [0] unused */
};

/* The settings of 'cfg' (NULL: every default) into *s. */
void csa_auto_settings_read(const struct csa_config *cfg, struct csa_auto_settings *s);

#endif
